package worker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/compat"
)

// bootErrorExit is the exit status of a worker that failed to boot
// (gunicorn's WORKER_BOOT_ERROR).
const bootErrorExit = 3

// Observer learns about worker lifecycle and call completion; the arbiter's
// router implements it. Calls come from pool and link goroutines.
type Observer interface {
	// WorkerStarted: the process exists and is loading its apps.
	WorkerStarted(p *Process)
	// WorkerReady: apps loaded, init() and dirty_worker_init done.
	WorkerReady(p *Process)
	// WorkerRetiring: the worker must get no new calls; it finishes the
	// ones it holds and then exits.
	WorkerRetiring(p *Process)
	// WorkerExited: the process is gone and reaped.
	WorkerExited(p *Process)
	// CallDone: the worker finished (or dropped) one call.
	CallDone(p *Process)
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	Spawner Spawner
	Apps    []compat.AppSpec
	Workers int
	// Timeout is dirty_timeout: a worker silent (no heartbeat) for longer
	// is aborted (SIGABRT, then SIGKILL), as gunicorn does. Zero disables.
	Timeout time.Duration
	// GracefulTimeout bounds how long a stopping worker may take to finish
	// its calls before it is killed (dirty_graceful_timeout).
	GracefulTimeout time.Duration
	Log             logrus.FieldLogger
	// RespawnBackoffMax caps the delay between respawns of workers that
	// keep failing to boot.
	RespawnBackoffMax time.Duration
	// MonitorInterval is how often heartbeats are checked (default 1s,
	// as gunicorn's arbiter); recycling rules are checked as often.
	MonitorInterval time.Duration
	// Recycle says when healthy workers are replaced by fresh ones.
	Recycle RecyclePolicy
	// Devices places accelerators on workers (nil: no placement).
	Devices *DevicePlan
	// TreeMemory measures the resident memory of each worker's process
	// tree (default: from /proc); Jitter returns a random 0..n for
	// max_requests_jitter (default: math/rand). Tests replace them.
	TreeMemory func(pids []int) (map[int]int64, error)
	Jitter     func(n int64) int64
}

// Pool starts and supervises the dirty worker processes: it keeps the
// target number alive with gunicorn's per-app allocation, replaces a dead
// worker with one that loads the same apps, scales, reloads and retires
// workers without losing the calls they hold.
type Pool struct {
	cfg PoolConfig
	obs Observer
	log logrus.FieldLogger

	exited chan *Process
	wake   chan struct{} // asks Run to spawn what is missing
	quit   chan struct{} // closed when the pool stops: nobody reads exited

	// spawnMu serialises everything that decides what to spawn or retire
	// (manage, scaling, reload, recycle): each decision counts the workers
	// the previous one started.
	spawnMu sync.Mutex

	mu       sync.Mutex
	workers  map[int]*member
	target   int
	age      int
	respawns []respawn // dead workers, replaced first
	failures int       // consecutive boot failures, for backoff
	stopping bool
}

// member is the pool's bookkeeping for one process.
type member struct {
	p *Process
	// retiring workers take no new calls, do not count toward the target
	// and are not replaced when they exit.
	retiring bool
	// replaces is the worker this one takes over from (reload): that
	// worker retires once this one is ready.
	replaces *member
	aborted  bool
	// slot is the device slot the worker owns (-1: no placement); its
	// replacement inherits it.
	slot int
	// recycling is why the worker is being recycled ("" if it is not):
	// its replacement boots, then it retires.
	recycling string
	memWarned bool
}

// respawn is a dead worker to replace: its apps and device slot.
type respawn struct {
	apps []string
	slot int
}

// NewPool returns a pool; Run starts it.
func NewPool(cfg PoolConfig, obs Observer) *Pool {
	if cfg.RespawnBackoffMax == 0 {
		cfg.RespawnBackoffMax = 10 * time.Second
	}
	if cfg.MonitorInterval == 0 {
		cfg.MonitorInterval = time.Second
	}
	if cfg.TreeMemory == nil {
		cfg.TreeMemory = procTreeRSS
	}
	return &Pool{
		cfg:     cfg,
		obs:     obs,
		log:     cfg.Log,
		exited:  make(chan *Process),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		workers: map[int]*member{},
		target:  cfg.Workers,
	}
}

// Run spawns the workers and supervises them until ctx is cancelled, then
// stops them: SIGTERM (workers finish what they hold), SIGKILL after the
// graceful timeout. It returns once every worker has been reaped.
func (p *Pool) Run(ctx context.Context) error {
	p.manage()
	monitor := time.NewTicker(p.cfg.MonitorInterval)
	defer monitor.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			p.stop()
			return nil
		case w := <-p.exited:
			if delay := p.reap(w); delay > 0 {
				p.log.Warnf("Dirty worker boot failed %d time(s) in a row; next spawn in %s", p.failureCount(), delay)
				retry = time.After(delay)
			}
			if retry == nil {
				p.settle()
			}
		case <-p.wake:
			if retry == nil {
				p.settle()
			}
		case <-retry:
			retry = nil
			p.settle()
		case <-monitor.C:
			p.checkHeartbeats()
			if retry == nil {
				p.settle()
			}
		}
	}
}

// settle brings the pool to its target, then starts the recycles that
// are due.
func (p *Pool) settle() {
	p.manage()
	p.checkRecycle()
}

func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pool) failureCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures
}

// manage spawns workers until the target count is reached or no app needs
// another worker, and retires workers beyond the target (as gunicorn's
// manage_workers does) so that any race between reloads, scaling and
// crashes settles at the target.
func (p *Pool) manage() {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	if reason := p.manageLocked(); reason != "" {
		p.log.Errorf("Cannot spawn dirty worker: %s", reason)
	}
}

// manageLocked returns why it could not reach the target ("" if it did,
// or no app needs another worker).
func (p *Pool) manageLocked() string {
	p.retireExcess()
	for {
		p.mu.Lock()
		if p.stopping || p.activeLocked() >= p.target {
			p.mu.Unlock()
			return ""
		}
		var next respawn
		if len(p.respawns) > 0 {
			next = p.respawns[0]
			p.respawns = p.respawns[1:]
		} else {
			next.apps = appsForNewWorker(p.cfg.Apps, p.appCountsLocked())
			if len(next.apps) == 0 {
				p.mu.Unlock()
				return ""
			}
			var ok bool
			if next.slot, ok = p.freeSlotLocked(); !ok {
				p.mu.Unlock()
				return "every device is taken (set devices_shared to share them)"
			}
		}
		p.mu.Unlock()

		if _, err := p.spawn(next.apps, next.slot, nil); err != nil {
			p.mu.Lock()
			p.respawns = append([]respawn{next}, p.respawns...)
			p.mu.Unlock()
			return err.Error()
		}
	}
}

func (p *Pool) retireExcess() {
	p.mu.Lock()
	var extra []*member
	for !p.stopping && p.activeLocked()-len(extra) > p.target {
		victim := p.scaleDownVictimLocked(extra)
		if victim == nil {
			break
		}
		extra = append(extra, victim)
	}
	p.mu.Unlock()
	for _, m := range extra {
		p.retire(m, RetireExcess, "more workers than the target")
	}
}

// activeLocked counts workers that are not retiring.
func (p *Pool) activeLocked() int {
	n := 0
	for _, m := range p.workers {
		if !m.retiring && m.replaces == nil {
			n++
		}
	}
	return n
}

// appCountsLocked counts, per app, the workers that will keep serving it.
func (p *Pool) appCountsLocked() map[string]int {
	counts := map[string]int{}
	for _, m := range p.workers {
		if m.retiring {
			continue
		}
		for _, a := range m.p.Apps {
			counts[a]++
		}
	}
	return counts
}

// spawn starts a worker for apps on device slot; replaces is the worker
// it takes over from once ready (reload, recycle), or nil.
func (p *Pool) spawn(apps []string, slot int, replaces *member) (*member, error) {
	p.mu.Lock()
	p.age++
	age := p.age
	p.mu.Unlock()
	// A fast worker can say READY before Spawn returns: its readiness is
	// handled only once the pool and the observers know it.
	known := make(chan struct{})
	defer close(known)
	o := spawnOptions{
		Age:  age,
		Apps: apps,
		OnReady: func(w *Process) {
			<-known
			p.ready(w)
		},
		OnCallDone: func(w *Process) {
			p.callDone(w)
			p.obs.CallDone(w)
		},
	}
	if d := p.cfg.Devices; d != nil && slot >= 0 {
		o.Devices = d.devices(slot)
		o.Env = []string{d.Env + "=" + strings.Join(o.Devices, ",")}
	}
	w, err := p.cfg.Spawner.Spawn(o)
	if err != nil {
		return nil, fmt.Errorf("spawn worker for %v: %w", apps, err)
	}
	// Before anyone can see the worker (and count its calls).
	w.use.limit.Store(p.drawLimit())
	m := &member{p: w, replaces: replaces, slot: slot}
	p.mu.Lock()
	p.workers[w.PID] = m
	p.mu.Unlock()
	p.obs.WorkerStarted(w)
	if o.Devices != nil {
		p.log.Infof("Spawned dirty worker (pid: %d) with apps: %v, %s", w.PID, apps, o.Env[0])
	} else {
		p.log.Infof("Spawned dirty worker (pid: %d) with apps: %v", w.PID, apps)
	}
	go func() {
		<-w.Done()
		select {
		case p.exited <- w:
		case <-p.quit:
		}
	}()
	return m, nil
}

func (p *Pool) ready(w *Process) {
	p.mu.Lock()
	p.failures = 0
	m := p.workers[w.PID]
	var old *member
	reason := ""
	if m != nil && m.replaces != nil {
		old, m.replaces = m.replaces, nil
		// Retiring from this instant, under the same lock that made the
		// replacement count as active: otherwise a convergence pass in
		// between sees one worker too many and retires another one (whose
		// own replacement may not be ready yet) as excess.
		if old.retiring {
			old = nil
		} else {
			old.retiring = true
			reason = old.recycling
		}
	}
	p.mu.Unlock()
	p.log.Infof("Dirty worker %d booted", w.PID)
	p.obs.WorkerReady(w)
	if old != nil {
		if reason == "" {
			p.retireMarked(old, RetireReload, "replaced by reload")
		} else {
			p.retireMarked(old, reason, fmt.Sprintf("recycled (%s), replacement %d is ready", reason, w.PID))
		}
	}
}

// reap forgets an exited worker and queues its apps for the replacement.
// It returns how long to wait before spawning again (0 = now).
func (p *Pool) reap(w *Process) time.Duration {
	// Gone from the pool before anyone is told (gunicorn's
	// dirty_worker_exit hook no longer sees it in arbiter.workers).
	p.mu.Lock()
	m := p.workers[w.PID]
	delete(p.workers, w.PID)
	p.mu.Unlock()
	p.obs.WorkerExited(w)
	code := w.ExitCode()
	booted := w.Booted()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case code == bootErrorExit:
		p.log.Errorf("Dirty worker failed to boot (pid:%d, apps: %v); see its error above", w.PID, w.Apps)
	case code < 0:
		p.log.Warnf("Dirty worker (pid:%d) ended: %s", w.PID, w.ExitStatus())
	default:
		p.log.Infof("Dirty worker exited (pid:%d, status %d)", w.PID, code)
	}
	if p.stopping || m == nil {
		return 0
	}
	var successor *member
	for _, o := range p.workers {
		if o.replaces == m {
			successor = o
		}
	}
	switch {
	case m.replaces != nil:
		// A reload or recycle replacement that never came up: the worker
		// it was to replace keeps serving (a recycle is tried again).
		p.log.Errorf("Replacement for dirty worker %d failed; keeping it", m.replaces.p.PID)
		if m.replaces.recycling != "" {
			m.replaces.recycling = ""
			m.replaces.p.setRetireReason("")
		}
	case successor != nil:
		// Died while its replacement boots: that one takes over.
		successor.replaces = nil
	case !m.retiring:
		p.respawns = append(p.respawns, respawn{apps: w.Apps, slot: m.slot})
	}
	if booted {
		return 0
	}
	p.failures++
	delay := 100 * time.Millisecond << min(p.failures-1, 10)
	return min(delay, p.cfg.RespawnBackoffMax)
}

// retire stops routing to a worker, lets it finish what it holds and makes
// it exit (SIGTERM, then SIGKILL after the graceful timeout). reason is
// one of the Retire*/Recycle* kinds (STATUS, metrics), why the log text.
func (p *Pool) retire(m *member, reason, why string) {
	p.mu.Lock()
	if m.retiring {
		p.mu.Unlock()
		return
	}
	m.retiring = true
	p.mu.Unlock()
	p.retireMarked(m, reason, why)
}

// retireMarked retires a worker already marked retiring (by the caller,
// under p.mu).
func (p *Pool) retireMarked(m *member, reason, why string) {
	m.p.setRetireReason(reason)
	p.log.Infof("Retiring dirty worker %d: %s", m.p.PID, why)
	p.obs.WorkerRetiring(m.p)
	_ = m.p.Signal(syscall.SIGTERM)
	go func() {
		stopNudging := nudge([]*Process{m.p})
		defer stopNudging()
		t := time.NewTimer(p.cfg.GracefulTimeout)
		defer t.Stop()
		select {
		case <-m.p.Done():
		case <-t.C:
			p.log.Warnf("Dirty worker %d still busy after %s; killing it", m.p.PID, p.cfg.GracefulTimeout)
			_ = m.p.Signal(syscall.SIGKILL)
		}
	}()
}

// termRepeat is how often a stopping worker gets SIGTERM again.
const termRepeat = time.Second

// nudge repeats SIGTERM to workers until they exit or the returned stop is
// called. Python runs a signal handler only between bytecodes: a SIGTERM
// that lands just before the worker's main thread blocks reading its link
// is not seen until something interrupts that read (seen as retired
// workers idling until dirty_graceful_timeout). The worker host ignores
// repeats once it is stopping.
func nudge(workers []*Process) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(termRepeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				alive := 0
				for _, w := range workers {
					select {
					case <-w.Done():
					default:
						alive++
						_ = w.Signal(syscall.SIGTERM)
					}
				}
				if alive == 0 {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// checkHeartbeats aborts workers that stopped proving liveness for longer
// than dirty_timeout: SIGABRT first, SIGKILL on the next check.
func (p *Pool) checkHeartbeats() {
	if p.cfg.Timeout <= 0 {
		return
	}
	now := time.Now()
	p.mu.Lock()
	var abort, kill []*Process
	for _, m := range p.workers {
		if now.Sub(m.p.LastHeartbeat()) <= p.cfg.Timeout {
			continue
		}
		if !m.aborted {
			m.aborted = true
			abort = append(abort, m.p)
		} else {
			kill = append(kill, m.p)
		}
	}
	p.mu.Unlock()
	for _, w := range abort {
		p.log.Errorf("DIRTY WORKER TIMEOUT (pid:%d): no heartbeat for over %s", w.PID, p.cfg.Timeout)
		_ = w.Signal(syscall.SIGABRT)
	}
	for _, w := range kill {
		_ = w.Signal(syscall.SIGKILL)
	}
}

// stop terminates every worker: SIGTERM, then SIGKILL after the graceful
// timeout, and waits until all are reaped.
func (p *Pool) stop() {
	p.mu.Lock()
	p.stopping = true
	close(p.quit)
	workers := make([]*Process, 0, len(p.workers))
	for _, m := range p.workers {
		workers = append(workers, m.p)
	}
	p.mu.Unlock()
	for _, w := range workers {
		_ = w.Signal(syscall.SIGTERM)
	}
	stopNudging := nudge(workers)
	defer stopNudging()
	deadline := time.NewTimer(p.cfg.GracefulTimeout)
	defer deadline.Stop()
	for _, w := range workers {
		select {
		case <-w.Done():
		case <-deadline.C:
			p.log.Warnf("Dirty workers still running after %s; killing them", p.cfg.GracefulTimeout)
			for _, k := range workers {
				_ = k.Signal(syscall.SIGKILL)
			}
			<-w.Done()
		}
	}
	for _, w := range workers {
		<-w.Done()
		p.mu.Lock()
		delete(p.workers, w.PID)
		p.mu.Unlock()
		p.obs.WorkerExited(w)
	}
}

// Kill sends SIGKILL to every worker (fast shutdown); Run's stop then only
// reaps them.
func (p *Pool) Kill() {
	for _, w := range p.Workers() {
		_ = w.Signal(syscall.SIGKILL)
	}
}

// Workers returns the live workers (retiring ones included), oldest first.
func (p *Pool) Workers() []*Process {
	p.mu.Lock()
	out := make([]*Process, 0, len(p.workers))
	for _, m := range p.workers {
		out = append(out, m.p)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Age < out[j].Age })
	return out
}

// Signal sends sig to every live worker (e.g. USR1: reopen log files).
func (p *Pool) Signal(sig syscall.Signal) {
	for _, w := range p.Workers() {
		_ = w.Signal(sig)
	}
}
