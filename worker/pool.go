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
	WorkerStarted(p *Process)
	WorkerReady(p *Process)
	WorkerExited(p *Process)
	CallDone(p *Process)
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	Python  Python
	Apps    []compat.AppSpec
	Workers int
	// GracefulTimeout bounds how long stopping workers may take before
	// they are killed (dirty_graceful_timeout).
	GracefulTimeout time.Duration
	Log             logrus.FieldLogger
	// RespawnBackoffMax caps the delay between respawns of workers that
	// keep failing to boot.
	RespawnBackoffMax time.Duration
}

// Pool starts and supervises the dirty worker processes: it keeps the
// configured number alive with gunicorn's per-app allocation, and replaces
// a dead worker with one that loads the same apps.
type Pool struct {
	cfg PoolConfig
	obs Observer
	log logrus.FieldLogger

	exited chan *Process
	quit   chan struct{} // closed when the pool stops: nobody reads exited

	mu       sync.Mutex
	workers  map[int]*Process
	age      int
	respawns [][]string // apps of dead workers, replaced first
	failures int        // consecutive boot failures, for backoff
	stopping bool
}

// NewPool returns a pool; Run starts it.
func NewPool(cfg PoolConfig, obs Observer) *Pool {
	if cfg.RespawnBackoffMax == 0 {
		cfg.RespawnBackoffMax = 10 * time.Second
	}
	return &Pool{
		cfg:     cfg,
		obs:     obs,
		log:     cfg.Log,
		exited:  make(chan *Process),
		quit:    make(chan struct{}),
		workers: map[int]*Process{},
	}
}

// Run spawns the workers and supervises them until ctx is cancelled, then
// stops them: SIGTERM (workers finish what they hold), SIGKILL after the
// graceful timeout. It returns once every worker has been reaped.
func (p *Pool) Run(ctx context.Context) error {
	p.manage()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			p.stop()
			return nil
		case w := <-p.exited:
			delay := p.reap(w)
			if delay > 0 {
				p.log.Warnf("Dirty worker boot failed %d time(s) in a row; next spawn in %s", p.failureCount(), delay)
				retry = time.After(delay)
				continue
			}
			if retry == nil {
				p.manage()
			}
		case <-retry:
			retry = nil
			p.manage()
		}
	}
}

func (p *Pool) failureCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures
}

// manage spawns workers until the target count is reached or no app needs
// another worker.
func (p *Pool) manage() {
	for {
		p.mu.Lock()
		if p.stopping || len(p.workers) >= p.cfg.Workers {
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
		p.age++
		age := p.age
		p.mu.Unlock()

		if err := p.spawn(age, apps); err != nil {
			p.log.Errorf("Cannot spawn dirty worker: %v", err)
			p.mu.Lock()
			p.respawns = append([][]string{apps}, p.respawns...)
			p.mu.Unlock()
			return
		}
	}
}

func (p *Pool) appCountsLocked() map[string]int {
	counts := map[string]int{}
	for _, w := range p.workers {
		for _, a := range w.Apps {
			counts[a]++
		}
	}
	return counts
}

func (p *Pool) spawn(age int, apps []string) error {
	w, err := startProcess(spawnOptions{
		Python:     p.cfg.Python,
		Age:        age,
		Apps:       apps,
		OnReady:    p.ready,
		OnCallDone: p.obs.CallDone,
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.workers[w.PID] = w
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
	return nil
}

func (p *Pool) ready(w *Process) {
	p.mu.Lock()
	p.failures = 0
	p.mu.Unlock()
	p.log.Infof("Dirty worker %d booted", w.PID)
	p.obs.WorkerReady(w)
}

// reap forgets an exited worker and queues its apps for the replacement.
// It returns how long to wait before spawning again (0 = now).
func (p *Pool) reap(w *Process) time.Duration {
	p.obs.WorkerExited(w)
	code := w.ExitCode()
	booted := w.Booted()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.workers, w.PID)
	switch {
	case code == bootErrorExit:
		p.log.Errorf("Dirty worker failed to boot (pid:%d, apps: %v); see its error above", w.PID, w.Apps)
	case code < 0:
		p.log.Warnf("Dirty worker (pid:%d) killed by signal: %v", w.PID, w.ExitErr())
	default:
		p.log.Infof("Dirty worker exited (pid:%d, status %d)", w.PID, code)
	}
	if p.stopping {
		return 0
	}
	p.respawns = append(p.respawns, w.Apps)
	if booted {
		return 0
	}
	p.failures++
	delay := 100 * time.Millisecond << min(p.failures-1, 10)
	return min(delay, p.cfg.RespawnBackoffMax)
}

// stop terminates every worker: SIGTERM, then SIGKILL after the graceful
// timeout, and waits until all are reaped.
func (p *Pool) stop() {
	p.mu.Lock()
	p.stopping = true
	close(p.quit)
	workers := make([]*Process, 0, len(p.workers))
	for _, w := range p.workers {
		workers = append(workers, w)
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
			for _, k := range workers {
				_ = k.Signal(syscall.SIGKILL)
			}
			<-w.Done()
		}
	}
	for _, w := range workers {
		<-w.Done()
		p.obs.WorkerExited(w)
	}
	p.mu.Lock()
	p.workers = map[int]*Process{}
	p.mu.Unlock()
}

// Workers returns the live workers, oldest first.
func (p *Pool) Workers() []*Process {
	p.mu.Lock()
	out := make([]*Process, 0, len(p.workers))
	for _, w := range p.workers {
		out = append(out, w)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Age < out[j].Age })
	return out
}

// Kill sends SIGKILL to every worker (fast shutdown); Run's stop then only
// reaps them.
func (p *Pool) Kill() {
	for _, w := range p.Workers() {
		_ = w.Signal(syscall.SIGKILL)
	}
}
