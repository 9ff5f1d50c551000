package worker

import (
	"context"
	"sort"
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
	// as gunicorn's arbiter).
	MonitorInterval time.Duration
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
	respawns [][]string // apps of dead workers, replaced first
	failures int        // consecutive boot failures, for backoff
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
}

// NewPool returns a pool; Run starts it.
func NewPool(cfg PoolConfig, obs Observer) *Pool {
	if cfg.RespawnBackoffMax == 0 {
		cfg.RespawnBackoffMax = 10 * time.Second
	}
	if cfg.MonitorInterval == 0 {
		cfg.MonitorInterval = time.Second
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
				p.manage()
			}
		case <-p.wake:
			if retry == nil {
				p.manage()
			}
		case <-retry:
			retry = nil
			p.manage()
		case <-monitor.C:
			p.checkHeartbeats()
			if retry == nil {
				p.manage()
			}
		}
	}
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
	p.manageLocked()
}

func (p *Pool) manageLocked() {
	p.retireExcess()
	for {
		p.mu.Lock()
		if p.stopping || p.activeLocked() >= p.target {
			p.mu.Unlock()
			return
		}
		var apps []string
		if len(p.respawns) > 0 {
			apps = p.respawns[0]
			p.respawns = p.respawns[1:]
		} else {
			apps = appsForNewWorker(p.cfg.Apps, p.appCountsLocked())
		}
		if len(apps) == 0 {
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()

		if _, err := p.spawn(apps, nil); err != nil {
			p.log.Errorf("Cannot spawn dirty worker: %v", err)
			p.mu.Lock()
			p.respawns = append([][]string{apps}, p.respawns...)
			p.mu.Unlock()
			return
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
		p.retire(m, "more workers than the target")
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

func (p *Pool) spawn(apps []string, replaces *member) (*member, error) {
	p.mu.Lock()
	p.age++
	age := p.age
	p.mu.Unlock()
	w, err := p.cfg.Spawner.Spawn(spawnOptions{
		Age:        age,
		Apps:       apps,
		OnReady:    p.ready,
		OnCallDone: p.obs.CallDone,
	})
	if err != nil {
		return nil, err
	}
	m := &member{p: w, replaces: replaces}
	p.mu.Lock()
	p.workers[w.PID] = m
	p.mu.Unlock()
	p.obs.WorkerStarted(w)
	p.log.Infof("Spawned dirty worker (pid: %d) with apps: %v", w.PID, apps)
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
	if m != nil && m.replaces != nil {
		old, m.replaces = m.replaces, nil
	}
	p.mu.Unlock()
	p.log.Infof("Dirty worker %d booted", w.PID)
	p.obs.WorkerReady(w)
	if old != nil {
		p.retire(old, "replaced by reload")
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
		// A reload replacement that never came up: the worker it was to
		// replace keeps serving.
		p.log.Errorf("Reload: replacement for dirty worker %d failed; keeping it", m.replaces.p.PID)
	case successor != nil:
		// Died while its reload replacement boots: that one takes over.
		successor.replaces = nil
	case !m.retiring:
		p.respawns = append(p.respawns, w.Apps)
	}
	if booted {
		return 0
	}
	p.failures++
	delay := 100 * time.Millisecond << min(p.failures-1, 10)
	return min(delay, p.cfg.RespawnBackoffMax)
}

// retire stops routing to a worker, lets it finish what it holds and makes
// it exit (SIGTERM, then SIGKILL after the graceful timeout).
func (p *Pool) retire(m *member, reason string) {
	p.mu.Lock()
	if m.retiring {
		p.mu.Unlock()
		return
	}
	m.retiring = true
	p.mu.Unlock()
	p.log.Infof("Retiring dirty worker %d: %s", m.p.PID, reason)
	p.obs.WorkerRetiring(m.p)
	_ = m.p.Signal(syscall.SIGTERM)
	go func() {
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

// Recycle replaces a worker that holds a call past dirty_timeout: a
// replacement with the same apps starts at once and the stuck worker is
// retired, so no later call is routed to it.
func (p *Pool) Recycle(w *Process, reason string) {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	p.mu.Lock()
	m := p.workers[w.PID]
	if m == nil || m.retiring || p.stopping {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	// Replacement first, so the app never lacks a host in between.
	if _, err := p.spawn(w.Apps, nil); err != nil {
		p.log.Errorf("Cannot spawn replacement for dirty worker %d: %v", w.PID, err)
		p.mu.Lock()
		p.respawns = append(p.respawns, w.Apps)
		p.mu.Unlock()
		defer p.poke()
	}
	p.retire(m, reason)
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

// Reload replaces every worker: each gets a replacement with the same apps,
// and retires only once that replacement is ready, so the pool never lacks
// a worker for any app during the reload.
func (p *Pool) Reload() {
	if r, ok := p.cfg.Spawner.(interface{ Refresh() error }); ok {
		// First, so that replacements (and any crash respawn from now on)
		// run the apps' current code.
		if err := r.Refresh(); err != nil {
			p.log.Errorf("Reload: cannot restart the fork server (%v); replacements reuse the running one", err)
		}
	}
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	var olds []*member
	for _, m := range p.workers {
		if !m.retiring && m.replaces == nil && !p.isReplacedLocked(m) {
			olds = append(olds, m)
		}
	}
	p.mu.Unlock()
	sort.Slice(olds, func(i, j int) bool { return olds[i].p.Age < olds[j].p.Age })
	p.log.Infof("Reloading %d dirty workers", len(olds))
	for _, old := range olds {
		p.mu.Lock()
		alive := p.workers[old.p.PID] == old && !old.retiring && !p.stopping
		p.mu.Unlock()
		if !alive {
			continue // died meanwhile: the crash path replaces it
		}
		if _, err := p.spawn(old.p.Apps, old); err != nil {
			p.log.Errorf("Reload: cannot spawn replacement for worker %d: %v", old.p.PID, err)
		}
	}
	// Whatever raced with the reload, the pool converges to its target.
	p.poke()
}

func (p *Pool) isReplacedLocked(m *member) bool {
	for _, o := range p.workers {
		if o.replaces == m {
			return true
		}
	}
	return false
}

// ScaleResult reports what a scaling request did.
type ScaleResult struct {
	Changed int // workers spawned or retired
	Target  int
	Total   int // live workers after the change (retiring ones excluded)
	Reason  string
}

// ScaleUp adds up to n workers; the target grows only by the workers
// actually spawned (none when every app has reached its worker limit), as
// gunicorn's MANAGE add does.
func (p *Pool) ScaleUp(n int) ScaleResult {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	r := ScaleResult{}
	for i := 0; i < n; i++ {
		p.mu.Lock()
		before := p.activeLocked()
		p.target = max(p.target, before) + 1
		p.mu.Unlock()
		p.manageLocked()
		p.mu.Lock()
		grew := p.activeLocked() > before
		if !grew {
			p.target--
		}
		p.mu.Unlock()
		if !grew {
			r.Reason = "All apps have reached their worker limits"
			break
		}
		r.Changed++
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r.Target, r.Total = p.target, p.activeLocked()
	return r
}

// ScaleDown lowers the target by up to n, never below gunicorn's minimum
// (the largest per-app limit) and never retiring the last worker of an
// app. It retires the oldest removable worker, preferring workers that
// host no limited app.
func (p *Pool) ScaleDown(n int) ScaleResult {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	minimum := minimumWorkers(p.cfg.Apps)
	var retire []*member
	p.mu.Lock()
	r := ScaleResult{}
	for i := 0; i < n; i++ {
		if p.target <= minimum {
			r.Reason = "Cannot decrease below minimum workers required by app specs"
			break
		}
		victim := p.scaleDownVictimLocked(retire)
		if victim == nil {
			r.Reason = "Every remaining worker is the last host of an app"
			break
		}
		p.target--
		retire = append(retire, victim)
	}
	r.Target = p.target
	p.mu.Unlock()
	for _, m := range retire {
		p.retire(m, "scaled down")
	}
	p.mu.Lock()
	r.Changed = len(retire)
	r.Total = p.activeLocked()
	p.mu.Unlock()
	return r
}

// Minimum returns the lowest target ScaleDown accepts.
func (p *Pool) Minimum() int { return minimumWorkers(p.cfg.Apps) }

func (p *Pool) scaleDownVictimLocked(already []*member) *member {
	chosen := map[*member]bool{}
	for _, m := range already {
		chosen[m] = true
	}
	counts := map[string]int{}
	var candidates []*member
	for _, m := range p.workers {
		if m.retiring || chosen[m] || m.replaces != nil {
			continue
		}
		candidates = append(candidates, m)
		for _, a := range m.p.Apps {
			counts[a]++
		}
	}
	limited := map[string]bool{}
	for _, s := range p.cfg.Apps {
		if s.Workers > 0 {
			limited[s.ImportPath] = true
		}
	}
	var best *member
	bestLimited := 0
	for _, m := range candidates {
		strands := false
		nLimited := 0
		for _, a := range m.p.Apps {
			if counts[a] <= 1 {
				strands = true
			}
			if limited[a] {
				nLimited++
			}
		}
		if strands {
			continue
		}
		if best == nil || nLimited < bestLimited || (nLimited == bestLimited && m.p.Age < best.p.Age) {
			best, bestLimited = m, nLimited
		}
	}
	return best
}

// Target returns the number of workers the pool keeps.
func (p *Pool) Target() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
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
