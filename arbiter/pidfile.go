package arbiter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PidfilePath is gunicorn's well-known dirty arbiter PID file for a
// proc_name: <tmp>/gunicorn-dirty-<name>.pid, with '/' and ' ' replaced.
func PidfilePath(procName string) string {
	safe := strings.NewReplacer("/", "_", " ", "_").Replace(procName)
	return filepath.Join(os.TempDir(), "gunicorn-dirty-"+safe+".pid")
}

// Pidfile is gdirty's entry in gunicorn's orphan-cleanup convention.
type Pidfile struct {
	Path    string
	written bool
}

// ClaimPidfile stops an orphaned arbiter named by the PID file (one of this
// user's processes that lost its parent after a crash: SIGTERM, SIGKILL
// after 1 s, as gunicorn's master does) and writes our PID, 0600, no
// symlinks followed. An arbiter that still has its parent is left alone:
// the file is then not taken over, so two deployments sharing a proc_name
// never kill each other. The note says what happened, for the log.
func ClaimPidfile(path string) (pf *Pidfile, note string, err error) {
	pf = &Pidfile{Path: path}
	if pid, ok := readTrustedPid(path); ok && processOwnedByUs(pid) && syscall.Kill(pid, 0) == nil {
		if parentPid(pid) != 1 {
			return pf, fmt.Sprintf("dirty arbiter PID file %s names live arbiter %d; not taking it over", path, pid), nil
		}
		note = fmt.Sprintf("killed orphaned dirty arbiter (pid: %d) named by %s", pid, path)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if !ownedRegular(fi) {
			return pf, fmt.Sprintf("not writing dirty arbiter PID file %s: not a regular file owned by this user", path), nil
		}
		_ = os.Remove(path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return pf, note, fmt.Errorf("write PID file %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(strconv.Itoa(os.Getpid())); err != nil {
		return pf, note, fmt.Errorf("write PID file %s: %w", path, err)
	}
	pf.written = true
	return pf, note, nil
}

// Remove deletes the PID file if we wrote it and it still names us.
func (pf *Pidfile) Remove() {
	if pf == nil || !pf.written {
		return
	}
	data, err := os.ReadFile(pf.Path)
	if err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(pf.Path)
	}
}

func ownedRegular(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode().IsRegular() && int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&0o022 == 0
}

func readTrustedPid(path string) (int, bool) {
	fi, err := os.Lstat(path)
	if err != nil || !ownedRegular(fi) {
		return 0, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0, false
	}
	return pid, true
}

func processOwnedByUs(pid int) bool {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// parentPid reads a process's parent from /proc (0 if unknown).
func parentPid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces; fields follow the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// ParentArgs returns the argument vector of our parent process (nil when
// it cannot be read).
func ParentArgs() []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", os.Getppid()))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00")
}

// ParentAlive reports whether pid still exists (and, when it was our
// parent, is still our parent: a re-parented process means it died even
// if its PID was reused).
func ParentAlive(pid, originalPPID int) bool {
	if pid == originalPPID && os.Getppid() != originalPPID {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
