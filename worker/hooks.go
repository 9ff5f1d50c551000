package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// ArbiterHooks are the config hooks gunicorn runs inside its arbiter.
var ArbiterHooks = []string{"on_dirty_starting", "dirty_post_fork", "dirty_worker_exit"}

// ArbiterState is what hooks see of the arbiter (sent with every event).
type ArbiterState struct {
	PID        int           `json:"pid"`
	PPID       int           `json:"ppid"`
	SocketPath string        `json:"socket_path"`
	NumWorkers int           `json:"num_workers"`
	Alive      bool          `json:"alive"`
	AppSpecs   []AppSpecView `json:"app_specs"`
	Workers    []WorkerView  `json:"workers"`
}

// AppSpecView mirrors gunicorn's arbiter app_specs entries.
type AppSpecView struct {
	ImportPath   string `json:"import_path"`
	WorkerCount  *int   `json:"worker_count"`
	OriginalSpec string `json:"original_spec"`
}

// WorkerView mirrors the attributes of gunicorn's DirtyWorker.
type WorkerView struct {
	PID      int      `json:"pid"`
	Age      int      `json:"age"`
	PPID     int      `json:"ppid"`
	Apps     []string `json:"apps"`
	Booted   bool     `json:"booted"`
	Aborted  bool     `json:"aborted"`
	Alive    bool     `json:"alive"`
	ExitCode *int     `json:"exitcode,omitempty"`
}

// ViewOf describes a worker process for hooks.
func ViewOf(p *Process, alive bool) WorkerView {
	v := WorkerView{PID: p.PID, Age: p.Age, PPID: os.Getpid(), Apps: p.Apps, Booted: p.Booted(), Alive: alive}
	if !alive && p.status.known {
		code := p.ExitCode()
		v.ExitCode = &code
	}
	return v
}

// HookHost runs the arbiter-side hooks in a Python process (gdirty's
// arbiter is not Python). Events are delivered in order; a hook that
// raises is logged with its traceback and changes nothing else.
type HookHost struct {
	log   logrus.FieldLogger
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	state func() ArbiterState
	// Timeout bounds one hook call; a hook host that hangs is killed and
	// the remaining hooks are skipped, never the arbiter.
	Timeout time.Duration

	mu   sync.Mutex
	dead bool
}

// StartHookHost starts the hook host. state is called for every event to
// give hooks a current view of the arbiter.
func StartHookHost(py Python, log logrus.FieldLogger, state func() ArbiterState) (*HookHost, error) {
	cmd := py.command("gdirty_pyshim.hooks", py.GunicornArgs...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("hook host stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("hook host stdout: %w", err)
	}
	cmd.Stderr = os.Stderr
	// Its own process group: a signal meant for gdirty's group (Ctrl-C,
	// timeout(1)) must not kill the hook host before the exit hooks ran.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start hook host: %w", err)
	}
	return &HookHost{log: log, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), state: state, Timeout: 60 * time.Second}, nil
}

type hookEvent struct {
	Event   string       `json:"event"`
	Arbiter ArbiterState `json:"arbiter"`
	Worker  *WorkerView  `json:"worker,omitempty"`
}

type hookReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// Call runs one hook and waits for it.
func (h *HookHost) Call(event string, w *WorkerView) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead {
		return
	}
	line, err := json.Marshal(hookEvent{Event: event, Arbiter: h.state(), Worker: w})
	if err != nil {
		h.log.Errorf("Hook %s: %v", event, err)
		return
	}
	done := make(chan hookReply, 1)
	go func() {
		var r hookReply
		if _, err := h.stdin.Write(append(line, '\n')); err != nil {
			r.Error = "hook host is gone: " + err.Error()
		} else if data, err := h.out.ReadBytes('\n'); err != nil {
			r.Error = "hook host is gone: " + err.Error()
		} else if err := json.Unmarshal(data, &r); err != nil {
			r.Error = "bad reply from hook host: " + err.Error()
		}
		done <- r
	}()
	select {
	case r := <-done:
		if !r.OK {
			h.log.Errorf("Hook %s raised an exception (ignored):\n%s", event, r.Error)
			if len(r.Error) >= 19 && r.Error[:19] == "hook host is gone: " {
				h.dead = true
			}
		}
	case <-time.After(h.Timeout):
		h.log.Errorf("Hook %s did not return within %s; killing the hook host, later hooks are skipped", event, h.Timeout)
		h.dead = true
		_ = h.cmd.Process.Kill()
	}
}

// Close ends the hook host and waits for it.
func (h *HookHost) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dead = true
	_ = h.stdin.Close()
	waited := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-waited
	}
}

// Observer returns an Observer that runs dirty_post_fork when a worker
// starts and dirty_worker_exit when one has exited, as gunicorn's arbiter.
func (h *HookHost) Observer(defined map[string]bool) Observer {
	return hookObserver{h: h, defined: defined}
}

type hookObserver struct {
	h       *HookHost
	defined map[string]bool
}

func (o hookObserver) WorkerStarted(p *Process) {
	if o.defined["dirty_post_fork"] {
		v := ViewOf(p, true)
		o.h.Call("dirty_post_fork", &v)
	}
}

func (o hookObserver) WorkerExited(p *Process) {
	if o.defined["dirty_worker_exit"] {
		v := ViewOf(p, false)
		o.h.Call("dirty_worker_exit", &v)
	}
}

func (hookObserver) WorkerReady(*Process)    {}
func (hookObserver) WorkerRetiring(*Process) {}
func (hookObserver) CallDone(*Process)       {}

// Observers fans lifecycle events out to several observers, in order.
type Observers []Observer

func (os Observers) WorkerStarted(p *Process) {
	for _, o := range os {
		o.WorkerStarted(p)
	}
}

func (os Observers) WorkerReady(p *Process) {
	for _, o := range os {
		o.WorkerReady(p)
	}
}

func (os Observers) WorkerRetiring(p *Process) {
	for _, o := range os {
		o.WorkerRetiring(p)
	}
}

func (os Observers) WorkerExited(p *Process) {
	for _, o := range os {
		o.WorkerExited(p)
	}
}

func (os Observers) CallDone(p *Process) {
	for _, o := range os {
		o.CallDone(p)
	}
}
