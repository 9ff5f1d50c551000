package worker

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readMark is 8 bytes of memory shared with one worker, in which the
// worker stores the link id of the last request it has read, before that
// request can start. Link ids grow, so when the worker dies every pending
// call with a larger id was never read — it cannot have run and is routed
// to another worker instead of failing. gdirty reads the mark only then:
// the hot path pays no syscall for it.
type readMark struct {
	mem  []byte
	file *os.File // the memfd, handed to the worker
}

func newReadMark() (*readMark, error) {
	fd, err := unix.MemfdCreate("gdirty-readmark", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create read mark: %w", err)
	}
	if err := unix.Ftruncate(fd, 8); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size read mark: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map read mark: %w", err)
	}
	return &readMark{mem: mem, file: os.NewFile(uintptr(fd), "gdirty-readmark")}, nil
}

// lastRead returns the id of the last request the worker read.
func (m *readMark) lastRead() uint64 {
	if m == nil {
		return 0
	}
	// The worker stores little-endian; x86-64 and arm64 load it natively.
	v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&m.mem[0])))
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], v)
		v = binary.LittleEndian.Uint64(b[:])
	}
	return v
}

// closeFile drops gdirty's copy of the fd once the worker has its own.
func (m *readMark) closeFile() {
	if m != nil && m.file != nil {
		m.file.Close()
		m.file = nil
	}
}

// release unmaps the mark once the worker is gone.
func (m *readMark) release() {
	if m == nil {
		return
	}
	m.closeFile()
	_ = unix.Munmap(m.mem)
}
