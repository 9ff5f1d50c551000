package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// ForkServer spawns workers by asking a Python fork server (exec'd once,
// config loaded and app modules imported once) to fork them, so a worker
// starts in milliseconds: gunicorn forks its workers from an arbiter that
// already imported the apps, and gdirty must respawn at least as fast.
//
// A reload (Refresh) starts a new fork server, so reloaded workers import
// the apps' current code; the old server keeps running, reporting its
// children's exits, until its last child is gone.
type ForkServer struct {
	py  Python
	log logrus.FieldLogger
	// SpawnTimeout bounds one fork request.
	SpawnTimeout time.Duration

	mu      sync.Mutex
	current *zygote
	closed  bool
}

// zygote is one fork server process and its control channel.
type zygote struct {
	log  logrus.FieldLogger
	cmd  *exec.Cmd
	conn *net.UnixConn

	mu      sync.Mutex
	waiting map[int]chan zygoteReply // by worker age
	exits   map[int]chan exitStatus  // by pid
	dead    chan struct{}
}

type zygoteReply struct {
	Op     string `json:"op"`
	Age    int    `json:"age"`
	PID    int    `json:"pid"`
	Status int    `json:"status"`
	Error  string `json:"error"`
}

// NewForkServer starts a fork server. It fails when the Python side cannot
// start (the caller then falls back to ExecSpawner).
func NewForkServer(py Python, log logrus.FieldLogger) (*ForkServer, error) {
	fs := &ForkServer{py: py, log: log, SpawnTimeout: 30 * time.Second}
	z, err := startZygote(py, log)
	if err != nil {
		return nil, err
	}
	fs.current = z
	return fs, nil
}

func startZygote(py Python, log logrus.FieldLogger) (*zygote, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fork server channel: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "gdirty-forkserver")
	theirs := os.NewFile(uintptr(fds[1]), "gdirty-forkserver-child")
	defer theirs.Close()
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("fork server channel: %w", err)
	}
	conn := fc.(*net.UnixConn)

	args := append([]string{"--control-fd", "3", "--"}, py.GunicornArgs...)
	cmd := py.command("gdirty_pyshim.forkserver", args...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own group: signals for gdirty's group are not for the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start fork server: %w", err)
	}
	z := &zygote{log: log, cmd: cmd, conn: conn, waiting: map[int]chan zygoteReply{}, exits: map[int]chan exitStatus{}, dead: make(chan struct{})}
	go func() { _ = cmd.Wait() }()

	// The server says "ready" once its config is loaded and apps imported.
	ready := make(chan error, 1)
	go z.read(ready)
	select {
	case err := <-ready:
		if err != nil {
			z.close()
			return nil, err
		}
	case <-time.After(5 * time.Minute):
		z.close()
		return nil, errors.New("fork server did not become ready")
	}
	return z, nil
}

// read dispatches the server's messages until the channel closes.
func (z *zygote) read(ready chan<- error) {
	buf := make([]byte, 64*1024)
	first := true
	defer func() {
		z.mu.Lock()
		close(z.dead)
		exits := z.exits
		z.exits = map[int]chan exitStatus{}
		z.mu.Unlock()
		if first {
			ready <- errors.New("fork server exited before it was ready")
		}
		// Children of a dead server are re-parented to init: their exit
		// status is lost, so watch them until they are gone.
		for pid, ch := range exits {
			go watchOrphan(pid, ch)
		}
	}()
	for {
		n, err := z.conn.Read(buf)
		if err != nil || n == 0 {
			return
		}
		var r zygoteReply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			z.log.Errorf("Fork server sent a bad message: %v", err)
			continue
		}
		switch r.Op {
		case "ready":
			if first {
				first = false
				ready <- nil
			}
		case "spawned", "error":
			z.mu.Lock()
			ch := z.waiting[r.Age]
			delete(z.waiting, r.Age)
			if r.Op == "spawned" {
				// Registered here, before any later "exit" is read.
				z.exits[r.PID] = make(chan exitStatus, 1)
			}
			z.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		case "exit":
			z.mu.Lock()
			ch := z.exits[r.PID]
			delete(z.exits, r.PID)
			z.mu.Unlock()
			if ch != nil {
				ch <- statusFromWait(syscall.WaitStatus(r.Status))
			}
		}
	}
}

func watchOrphan(pid int, ch chan<- exitStatus) {
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(100 * time.Millisecond)
	}
	ch <- exitStatus{}
}

// spawn asks the server to fork a worker whose link is child.
func (z *zygote) spawn(o spawnOptions, child childLink, markFile *os.File, timeout time.Duration) (int, chan exitStatus, error) {
	reply := make(chan zygoteReply, 1)
	z.mu.Lock()
	select {
	case <-z.dead:
		z.mu.Unlock()
		return 0, nil, errors.New("fork server is gone")
	default:
	}
	z.waiting[o.Age] = reply
	z.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"op": "spawn", "age": o.Age, "apps": o.Apps, "ppid": os.Getpid(), "env": o.Env})
	rights := syscall.UnixRights(int(child.In.Fd()), int(child.Out.Fd()), int(markFile.Fd()))
	if _, _, err := z.conn.WriteMsgUnix(msg, rights, nil); err != nil {
		return 0, nil, fmt.Errorf("send spawn request: %w", err)
	}
	select {
	case r := <-reply:
		if r.Op == "error" {
			return 0, nil, fmt.Errorf("fork server: %s", r.Error)
		}
		z.mu.Lock()
		ch := z.exits[r.PID]
		z.mu.Unlock()
		if ch == nil {
			// Exited (and reported) already, or the server died.
			ch = make(chan exitStatus, 1)
			go watchOrphan(r.PID, ch)
		}
		return r.PID, ch, nil
	case <-z.dead:
		return 0, nil, errors.New("fork server exited during spawn")
	case <-time.After(timeout):
		return 0, nil, errors.New("fork server did not answer")
	}
}

// retire asks the server to fork no more and exit after its children.
func (z *zygote) retire() {
	_, _, _ = z.conn.WriteMsgUnix([]byte(`{"op": "retire"}`), nil, nil)
}

func (z *zygote) close() {
	z.conn.Close()
	if z.cmd.Process != nil {
		_ = z.cmd.Process.Kill()
	}
}

// Spawn implements Spawner.
func (fs *ForkServer) Spawn(o spawnOptions) (*Process, error) {
	z, err := fs.zygote()
	if err != nil {
		return nil, err
	}
	conn, child, err := newLinkPair()
	if err != nil {
		return nil, err
	}
	defer child.Close()
	mark, err := newReadMark()
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer mark.closeFile()
	pid, exited, err := z.spawn(o, child, mark.file, fs.SpawnTimeout)
	if err != nil {
		conn.Close()
		mark.release()
		return nil, err
	}
	return newProcess(o, pid, conn, mark, exited), nil
}

// zygote returns the live fork server, restarting it if it died.
func (fs *ForkServer) zygote() (*zygote, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return nil, errors.New("fork server closed")
	}
	select {
	case <-fs.current.dead:
		fs.log.Warn("Fork server died; starting a new one")
		z, err := startZygote(fs.py, fs.log)
		if err != nil {
			return nil, err
		}
		fs.current = z
	default:
	}
	return fs.current, nil
}

// Refresh starts a new fork server for later spawns (so they import the
// apps' current code) and retires the old one.
func (fs *ForkServer) Refresh() error {
	z, err := startZygote(fs.py, fs.log)
	if err != nil {
		return err
	}
	fs.mu.Lock()
	old := fs.current
	fs.current = z
	fs.mu.Unlock()
	old.retire()
	return nil
}

// Close implements Spawner: the server exits when its channel closes.
func (fs *ForkServer) Close() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.closed = true
	fs.current.conn.Close()
}
