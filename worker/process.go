package worker

import (
	"context"
	"fmt"

	"github.com/gdirty/gdirty/compat"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Process is one running Python dirty worker and its link.
type Process struct {
	Age  int
	Apps []string
	PID  int
	// Started is when the process was exec'd.
	Started time.Time

	cmd  *exec.Cmd
	link *Link

	mu            sync.Mutex
	booted        bool
	lastHeartbeat time.Time
	aborted       bool

	done     chan struct{} // closed once the process is reaped
	exitErr  error
	linkDone chan struct{} // closed once the link reader finished
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
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal worker %d: %w", p.PID, err)
	}
	return nil
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit status (valid after Done).
func (p *Process) ExitErr() error { return p.exitErr }

// ExitCode returns the exit code, or -1 if killed by a signal (after Done).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

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

// spawnOptions are the per-spawn inputs of startProcess.
type spawnOptions struct {
	Python  Python
	Age     int
	Apps    []string
	OnReady func(*Process)
	// OnCallDone runs every time the worker finishes (or drops) a call.
	OnCallDone func(*Process)
}

// startProcess execs a worker host connected by a socketpair. The worker
// runs in its own process group so a terminal's Ctrl-C reaches only gdirty,
// which then stops the pool in order.
func startProcess(o spawnOptions) (*Process, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create worker link: %w", err)
	}
	parentFile := os.NewFile(uintptr(fds[0]), "gdirty-link")
	childFile := os.NewFile(uintptr(fds[1]), "gdirty-link-worker")
	defer childFile.Close()
	conn, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		childFile.Close()
		return nil, fmt.Errorf("wrap worker link: %w", err)
	}

	args := []string{"--link-fd", "3", "--age", strconv.Itoa(o.Age)}
	for _, a := range o.Apps {
		args = append(args, "--app", a)
	}
	args = append(args, "--")
	args = append(args, o.Python.GunicornArgs...)
	// Not CommandContext: the pool decides how a worker is stopped.
	cmd := o.Python.command(context.Background(), "gdirty_pyshim.worker", args...)
	cmd.ExtraFiles = []*os.File{childFile}
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start worker (%s): %w", o.Python.Interpreter, err)
	}

	p := &Process{
		Age:      o.Age,
		Apps:     append([]string(nil), o.Apps...),
		PID:      cmd.Process.Pid,
		Started:  time.Now(),
		cmd:      cmd,
		done:     make(chan struct{}),
		linkDone: make(chan struct{}),
	}
	p.lastHeartbeat = p.Started
	p.link = newLink(conn, p.PID, processEvents{p: p, onReady: o.OnReady, onDone: o.OnCallDone})
	go func() {
		defer close(p.linkDone)
		_ = p.link.run(p.deathError)
	}()
	go func() {
		p.exitErr = cmd.Wait()
		// A worker's own children may hold the link open; once the worker
		// is reaped its calls are lost, so fail them now.
		p.link.Close()
		<-p.linkDone
		close(p.done)
	}()
	return p, nil
}

// deathError is what every call the worker still held receives when its
// link breaks: gunicorn's DirtyWorkerError for a failed worker exchange.
func (p *Process) deathError(cause error) *compat.DirtyError {
	return compat.ErrWorker(fmt.Sprintf("Worker communication failed: worker %d exited", p.PID), p.PID)
}
