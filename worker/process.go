package worker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gdirty/gdirty/compat"
)

// Process is one running Python dirty worker and its link.
type Process struct {
	Age  int
	Apps []string
	PID  int
	// Started is when the process was started.
	Started time.Time
	// Devices are the accelerators the worker owns (nil: no placement).
	Devices []string

	link *Link
	// kill delivers a signal (syscall.Kill on the PID; fakes in tests).
	kill func(syscall.Signal) error

	use usage // calls served, for recycling

	mu            sync.Mutex
	booted        bool
	lastHeartbeat time.Time
	retireReason  string

	done     chan struct{} // closed once the process has exited
	status   exitStatus
	linkDone chan struct{} // closed once the link reader finished
}

// exitStatus is how a worker ended: an exit code, or the signal that
// killed it (code -1), or unknown (its parent could not tell).
type exitStatus struct {
	code   int
	signal syscall.Signal
	known  bool
}

func (s exitStatus) String() string {
	switch {
	case !s.known:
		return "unknown status"
	case s.signal != 0:
		return "signal: " + s.signal.String()
	default:
		return fmt.Sprintf("exit status %d", s.code)
	}
}

func statusFromWait(ws syscall.WaitStatus) exitStatus {
	if ws.Signaled() {
		return exitStatus{code: -1, signal: ws.Signal(), known: true}
	}
	return exitStatus{code: ws.ExitStatus(), known: true}
}

// Link returns the process's link.
func (p *Process) Link() *Link { return p.link }

// Booted reports whether the worker loaded its apps and said READY.
func (p *Process) Booted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.booted
}

// LastHeartbeat returns when the worker last proved it is alive.
func (p *Process) LastHeartbeat() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastHeartbeat
}

// Signal sends sig to the worker process.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil // already gone: its PID may belong to someone else now
	default:
	}
	if err := p.kill(sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal worker %d: %w", p.PID, err)
	}
	return nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitStatus describes how the process ended (valid after Done).
func (p *Process) ExitStatus() string { return p.status.String() }

// ExitCode returns the exit code, or -1 if killed by a signal or unknown
// (valid after Done).
func (p *Process) ExitCode() int {
	if !p.status.known {
		return -1
	}
	return p.status.code
}

// processEvents connects a Process's link to whoever supervises it.
type processEvents struct {
	p       *Process
	onReady func(*Process)
	onDone  func(*Process)
}

func (e processEvents) Ready(pid int, apps []string) {
	e.p.mu.Lock()
	e.p.booted = true
	e.p.lastHeartbeat = time.Now()
	e.p.mu.Unlock()
	if e.onReady != nil {
		e.onReady(e.p)
	}
}

func (e processEvents) Heartbeat() {
	e.p.mu.Lock()
	e.p.lastHeartbeat = time.Now()
	e.p.mu.Unlock()
}

func (e processEvents) CallDone() {
	if e.onDone != nil {
		e.onDone(e.p)
	}
}

// spawnOptions are the per-spawn inputs of a Spawner.
type spawnOptions struct {
	Age     int
	Apps    []string
	OnReady func(*Process)
	// OnCallDone runs every time the worker finishes (or drops) a call.
	OnCallDone func(*Process)
	// Devices the worker owns, and Env: extra NAME=value environment
	// (the devices variable) set before the apps load.
	Devices []string
	Env     []string
}

// Spawner starts worker processes.
type Spawner interface {
	Spawn(o spawnOptions) (*Process, error)
	// Close releases the spawner; live workers are not affected.
	Close()
}

// newProcess wires a started worker to its link. exited must deliver the
// exit status exactly once. mark may be nil (no re-routing on death).
func newProcess(o spawnOptions, pid int, conn net.Conn, mark *readMark, exited <-chan exitStatus) *Process {
	p := &Process{
		Age:      o.Age,
		Apps:     append([]string(nil), o.Apps...),
		Devices:  o.Devices,
		PID:      pid,
		Started:  time.Now(),
		done:     make(chan struct{}),
		linkDone: make(chan struct{}),
		kill:     func(sig syscall.Signal) error { return syscall.Kill(pid, sig) },
	}
	p.lastHeartbeat = p.Started
	p.link = newLink(conn, pid, processEvents{p: p, onReady: o.OnReady, onDone: o.OnCallDone})
	p.link.mark = mark
	go func() {
		defer close(p.linkDone)
		defer mark.release()
		_ = p.link.run(p.deathError)
	}()
	go func() {
		p.status = <-exited
		// A worker's own children may hold the link open; once the worker
		// is gone its calls are lost, so fail them now.
		p.link.Close()
		<-p.linkDone
		close(p.done)
	}()
	return p
}

// deathError is what every call the worker still held receives when its
// link breaks: gunicorn's DirtyWorkerError for a failed worker exchange.
func (p *Process) deathError(cause error) *compat.DirtyError {
	return compat.ErrWorker(fmt.Sprintf("Worker communication failed: worker %d exited", p.PID), p.PID)
}

// ExecSpawner starts each worker by exec of the pyshim worker host. It is
// the fallback when the fork server is unavailable.
type ExecSpawner struct {
	Python Python
}

// Spawn implements Spawner.
func (s ExecSpawner) Spawn(o spawnOptions) (*Process, error) {
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
	args := []string{"--link-in-fd", "3", "--link-out-fd", "4", "--mark-fd", "5", "--age", strconv.Itoa(o.Age)}
	for _, a := range o.Apps {
		args = append(args, "--app", a)
	}
	args = append(args, "--")
	args = append(args, s.Python.GunicornArgs...)
	cmd := s.Python.command("gdirty_pyshim.worker", args...)
	if len(o.Env) > 0 {
		base := cmd.Env
		if base == nil {
			base = os.Environ()
		}
		// A fresh slice: cmd.Env is shared by every spawn.
		cmd.Env = append(append([]string(nil), base...), o.Env...)
	}
	cmd.ExtraFiles = []*os.File{child.In, child.Out, mark.file}
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	// Its own process group, so a terminal's Ctrl-C reaches only gdirty,
	// which then stops the pool in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		conn.Close()
		mark.release()
		return nil, fmt.Errorf("start worker (%s): %w", s.Python.Interpreter, err)
	}
	exited := make(chan exitStatus, 1)
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			exited <- exitStatus{code: 0, known: true}
		case errors.As(err, &ee):
			exited <- statusFromWait(ee.Sys().(syscall.WaitStatus))
		default:
			exited <- exitStatus{}
		}
	}()
	return newProcess(o, cmd.Process.Pid, conn, mark, exited), nil
}

// Close implements Spawner.
func (ExecSpawner) Close() {}
