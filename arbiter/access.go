package arbiter

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// PeerUID returns the uid of the process at the other end of a Unix
// socket connection (SO_PEERCRED).
func PeerUID(conn net.Conn) (int, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return -1, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return int(cred.Uid), nil
}

// AllowUIDs opens the socket to other local users for access control by
// peer credentials instead of file modes: the socket becomes 0666 and its
// directory 0711 (enterable, not listable). Only gdirty's own uid and the
// listed ones are then served.
func AllowUIDs(socketPath string) error {
	if err := os.Chmod(filepath.Dir(socketPath), 0o711); err != nil {
		return fmt.Errorf("chmod socket directory: %w", err)
	}
	if err := os.Chmod(socketPath, 0o666); err != nil {
		return fmt.Errorf("chmod socket: %w", err)
	}
	return nil
}
