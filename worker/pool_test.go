package worker

import (
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/compat"
)

// The pool's state machine, driven through a fake Spawner whose "workers"
// are goroutines on net.Pipe links: no processes, no signals to real PIDs.

type fakeWorker struct {
	pid     int
	apps    []string
	conn    net.Conn
	exited  chan exitStatus
	once    sync.Once
	signals chan syscall.Signal
	// heartbeat=false simulates a stuck worker (no READY, no heartbeat).
	heartbeat bool
	// hold, when set, delays READY until it is closed (a slow boot).
	hold <-chan struct{}
	// missTerm: the first SIGTERM goes unnoticed (as a Python worker's
	// can, landing just before its main thread blocks in a read).
	missTerm bool
	// busy: SIGTERM never ends it (a call that outlives the graceful
	// timeout).
	busy   bool
	termMu sync.Mutex
	terms  int
}

func (w *fakeWorker) exit(st exitStatus) {
	w.once.Do(func() {
		w.conn.Close()
		w.exited <- st
	})
}

func (w *fakeWorker) signal(sig syscall.Signal) error {
	select {
	case w.signals <- sig:
	default:
	}
	switch sig {
	case syscall.SIGTERM:
		w.termMu.Lock()
		w.terms++
		missed := w.busy || (w.missTerm && w.terms == 1)
		w.termMu.Unlock()
		if missed {
			return nil
		}
		go w.exit(exitStatus{code: 0, known: true})
	case syscall.SIGKILL, syscall.SIGABRT:
		go w.exit(exitStatus{code: -1, signal: sig, known: true})
	}
	return nil
}

func (w *fakeWorker) run(bootFails bool) {
	if bootFails {
		w.exit(exitStatus{code: bootErrorExit, known: true})
		return
	}
	if !w.heartbeat {
		_, _ = io.Copy(io.Discard, w.conn) // alive but silent
		return
	}
	if w.hold != nil {
		<-w.hold
	}
	apps := make([]any, len(w.apps))
	for i, a := range w.apps {
		apps[i] = a
	}
	ready, _ := compat.Encode(compat.NewDict("pid", int64(w.pid), "apps", apps))
	if _, err := w.conn.Write(compat.AppendFrame(nil, msgReady, 0, ready)); err != nil {
		return
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := w.conn.Write(compat.AppendFrame(nil, msgHeartbeat, 0, nil)); err != nil {
					return
				}
			}
		}
	}()
	_, _ = io.Copy(io.Discard, w.conn)
}

type fakeSpawner struct {
	mu       sync.Mutex
	pid      int
	workers  []*fakeWorker
	bootFail func(n int) bool // n = spawn number, from 1
	silent   bool
	opts     []spawnOptions
	// slow, when set, holds READY of spawn n until release is closed.
	slow    func(n int) bool
	release chan struct{}
	// deaf: every worker misses its first SIGTERM.
	deaf bool
	// busy: every worker ignores SIGTERM.
	busy bool
}

func (f *fakeSpawner) Spawn(o spawnOptions) (*Process, error) {
	f.mu.Lock()
	f.pid++
	n := f.pid
	f.mu.Unlock()
	ours, theirs := net.Pipe()
	w := &fakeWorker{pid: 100000 + n, apps: o.Apps, conn: theirs, exited: make(chan exitStatus, 1),
		signals: make(chan syscall.Signal, 8), heartbeat: !f.silent}
	w.missTerm, w.busy = f.deaf, f.busy
	if f.slow != nil && f.slow(n) {
		w.hold = f.release
	}
	p := newProcess(o, w.pid, ours, nil, w.exited)
	p.kill = w.signal
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.opts = append(f.opts, o)
	f.mu.Unlock()
	go w.run(f.bootFail != nil && f.bootFail(n))
	return p, nil
}

func (f *fakeSpawner) Close() {}

func (f *fakeSpawner) options() []spawnOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]spawnOptions(nil), f.opts...)
}

func (f *fakeSpawner) spawned() []*fakeWorker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeWorker(nil), f.workers...)
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(kind string, p *Process) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("%s %d", kind, p.PID))
	r.mu.Unlock()
}

func (r *recorder) WorkerStarted(p *Process)  { r.add("started", p) }
func (r *recorder) WorkerReady(p *Process)    { r.add("ready", p) }
func (r *recorder) WorkerRetiring(p *Process) { r.add("retiring", p) }
func (r *recorder) WorkerExited(p *Process)   { r.add("exited", p) }
func (r *recorder) CallDone(*Process)         {}

func (r *recorder) index(ev string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.events {
		if e == ev {
			return i
		}
	}
	return -1
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func startPool(t *testing.T, cfg PoolConfig, sp *fakeSpawner) (*Pool, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.Spawner = sp
	cfg.Log = quietLog()
	if cfg.GracefulTimeout == 0 {
		cfg.GracefulTimeout = time.Second
	}
	p := NewPool(cfg, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("pool did not stop")
		}
	})
	return p, rec
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appsOf(p *Pool) [][]string {
	var out [][]string
	for _, w := range p.Workers() {
		out = append(out, w.Apps)
	}
	return out
}

func allBooted(p *Pool, n int) func() bool {
	return func() bool {
		ws := p.Workers()
		if len(ws) != n {
			return false
		}
		for _, w := range ws {
			if !w.Booted() {
				return false
			}
		}
		return true
	}
}

var gunicornDocSpecs = []compat.AppSpec{
	{ImportPath: "m:Light"},
	{ImportPath: "m:Heavy", Workers: 2},
	{ImportPath: "m:Single", Workers: 1},
}

func TestPoolStartsWorkersWithGunicornAllocation(t *testing.T) {
	p, _ := startPool(t, PoolConfig{Apps: gunicornDocSpecs, Workers: 4}, &fakeSpawner{})
	eventually(t, "4 booted workers", allBooted(p, 4))
	want := [][]string{
		{"m:Light", "m:Heavy", "m:Single"},
		{"m:Light", "m:Heavy"},
		{"m:Light"},
		{"m:Light"},
	}
	if got := appsOf(p); !reflect.DeepEqual(got, want) {
		t.Fatalf("allocation %v, want %v", got, want)
	}
}

func TestPoolReplacesDeadWorkerWithSameApps(t *testing.T) {
	sp := &fakeSpawner{}
	p, _ := startPool(t, PoolConfig{Apps: gunicornDocSpecs, Workers: 3}, sp)
	eventually(t, "3 booted workers", allBooted(p, 3))
	first := sp.spawned()[0]
	first.exit(exitStatus{code: -1, signal: syscall.SIGKILL, known: true})
	eventually(t, "a replacement", func() bool { return len(sp.spawned()) == 4 && allBooted(p, 3)() })
	repl := sp.spawned()[3]
	if !reflect.DeepEqual(repl.apps, first.apps) {
		t.Fatalf("replacement loads %v, the dead worker had %v", repl.apps, first.apps)
	}
}

func TestPoolBootFailuresBackOff(t *testing.T) {
	p := NewPool(PoolConfig{Spawner: &fakeSpawner{}, Apps: gunicornDocSpecs, Workers: 1, Log: quietLog(), RespawnBackoffMax: 300 * time.Millisecond}, &recorder{})
	var delays []time.Duration
	for i := 0; i < 5; i++ {
		w := newProcess(spawnOptions{Apps: []string{"m:Light"}}, 1, nopConn(), nil, closedStatus(bootErrorExit))
		<-w.Done()
		p.workers[w.PID] = &member{p: w}
		delays = append(delays, p.reap(w))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	if !reflect.DeepEqual(delays, want) {
		t.Fatalf("backoff %v, want %v", delays, want)
	}
}

func nopConn() net.Conn {
	a, b := net.Pipe()
	b.Close()
	return a
}

func closedStatus(code int) chan exitStatus {
	ch := make(chan exitStatus, 1)
	ch <- exitStatus{code: code, known: true}
	return ch
}

func TestPoolScaleDownNeverStrandsAnApp(t *testing.T) {
	specs := []compat.AppSpec{{ImportPath: "m:A"}, {ImportPath: "m:B", Workers: 1}}
	p, _ := startPool(t, PoolConfig{Apps: specs, Workers: 3}, &fakeSpawner{})
	eventually(t, "3 booted workers", allBooted(p, 3))
	r := p.ScaleDown(5)
	if r.Target != 1 || r.Changed != 2 {
		t.Fatalf("scale down: %+v, want target 1 after retiring 2", r)
	}
	eventually(t, "one worker left", func() bool { return len(p.Workers()) == 1 })
	if got := p.Workers()[0].Apps; !reflect.DeepEqual(got, []string{"m:A", "m:B"}) {
		t.Fatalf("the remaining worker hosts %v: m:B was stranded", got)
	}
	if r := p.ScaleDown(1); r.Changed != 0 || r.Reason == "" {
		t.Fatalf("scale below the minimum: %+v", r)
	}
}

func TestPoolScaleUpStopsWhenAppsAreFull(t *testing.T) {
	specs := []compat.AppSpec{{ImportPath: "m:A", Workers: 1}}
	p, _ := startPool(t, PoolConfig{Apps: specs, Workers: 1}, &fakeSpawner{})
	eventually(t, "1 booted worker", allBooted(p, 1))
	r := p.ScaleUp(2)
	if r.Changed != 0 || r.Target != 1 || r.Reason == "" {
		t.Fatalf("scale up with every app at its limit: %+v", r)
	}
}

func TestPoolReloadReplacesEveryWorkerReadyFirst(t *testing.T) {
	sp := &fakeSpawner{}
	p, rec := startPool(t, PoolConfig{Apps: gunicornDocSpecs, Workers: 2}, sp)
	eventually(t, "2 booted workers", allBooted(p, 2))
	// Reload replaces workers oldest first (by Age), and the first workers
	// may have been spawned in either order: pair each replacement (spawned
	// in that order) with the worker it replaces by age, not spawn order.
	old := sp.spawned()
	ages := map[int]int{}
	for _, w := range p.Workers() {
		ages[w.PID] = w.Age
	}
	sort.Slice(old, func(i, j int) bool { return ages[old[i].pid] < ages[old[j].pid] })
	p.Reload()
	eventually(t, "old workers gone, 2 new ones", func() bool {
		ws := p.Workers()
		return len(ws) == 2 && ws[0].PID != old[0].pid && ws[1].PID != old[1].pid && allBooted(p, 2)()
	})
	all := sp.spawned()
	for i, o := range old {
		repl := all[2+i]
		if !reflect.DeepEqual(repl.apps, o.apps) {
			t.Fatalf("replacement %d loads %v, want %v", i, repl.apps, o.apps)
		}
		ready := rec.index(fmt.Sprintf("ready %d", repl.pid))
		retiring := rec.index(fmt.Sprintf("retiring %d", o.pid))
		if ready < 0 || retiring < 0 || retiring < ready {
			t.Fatalf("worker %d retired (event %d) before its replacement %d was ready (event %d); events %v", o.pid, retiring, repl.pid, ready, rec.events)
		}
	}
	var pids []int
	for _, w := range p.Workers() {
		pids = append(pids, w.PID)
	}
	sort.Ints(pids)
	if len(pids) != 2 {
		t.Fatalf("workers after reload: %v", pids)
	}
}

func TestPoolAbortsSilentWorker(t *testing.T) {
	sp := &fakeSpawner{silent: true}
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		Timeout: 100 * time.Millisecond, MonitorInterval: 20 * time.Millisecond}, sp)
	eventually(t, "a worker", func() bool { return len(sp.spawned()) >= 1 })
	w := sp.spawned()[0]
	select {
	case sig := <-w.signals:
		if sig != syscall.SIGABRT {
			t.Fatalf("first signal %v, want SIGABRT", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent worker never aborted")
	}
	eventually(t, "a replacement for the aborted worker", func() bool { return len(sp.spawned()) >= 2 })
	_ = p
}

func TestPoolRecycleSpawnsReplacementFirst(t *testing.T) {
	sp := &fakeSpawner{}
	p, rec := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	stuck := p.Workers()[0]
	p.Recycle(stuck, "test")
	eventually(t, "stuck worker replaced", func() bool {
		ws := p.Workers()
		return len(ws) == 1 && ws[0].PID != stuck.PID && ws[0].Booted()
	})
	started := rec.index(fmt.Sprintf("started %d", sp.spawned()[1].pid))
	retiring := rec.index(fmt.Sprintf("retiring %d", stuck.PID))
	if started < 0 || retiring < 0 || started > retiring {
		t.Fatalf("replacement started at event %d, stuck worker retired at %d", started, retiring)
	}
}

// A reload racing worker deaths must still end with exactly the target
// number of workers, all new (soak testing found extra workers left over).
func TestPoolReloadRacingDeathsConverges(t *testing.T) {
	sp := &fakeSpawner{}
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 3}, sp)
	eventually(t, "3 booted workers", allBooted(p, 3))
	old := sp.spawned()
	go old[0].exit(exitStatus{code: -1, signal: syscall.SIGKILL, known: true})
	p.Reload()
	go old[1].exit(exitStatus{code: -1, signal: syscall.SIGKILL, known: true})
	eventually(t, "exactly 3 booted workers, none of the old ones", func() bool {
		ws := p.Workers()
		if len(ws) != 3 || !allBooted(p, 3)() {
			return false
		}
		for _, w := range ws {
			for _, o := range old {
				if w.PID == o.pid {
					return false
				}
			}
		}
		return true
	})
}

// More workers than the target (whatever caused it) are retired without
// stranding an app.
func TestPoolRetiresWorkersBeyondTarget(t *testing.T) {
	specs := []compat.AppSpec{{ImportPath: "m:A"}, {ImportPath: "m:B", Workers: 1}}
	p, _ := startPool(t, PoolConfig{Apps: specs, Workers: 1}, &fakeSpawner{})
	eventually(t, "1 booted worker", allBooted(p, 1))
	// Force two extra workers past the target, as a racing reload could.
	for i := 0; i < 2; i++ {
		if _, err := p.spawn([]string{"m:A"}, -1, nil); err != nil {
			t.Fatal(err)
		}
	}
	p.poke()
	eventually(t, "back to one worker", func() bool { return len(p.Workers()) == 1 })
	if got := p.Workers()[0].Apps; !reflect.DeepEqual(got, []string{"m:A", "m:B"}) {
		t.Fatalf("kept %v: the only host of m:B was retired", got)
	}
}

// A retired worker that missed its SIGTERM gets another one, and exits
// long before the graceful timeout would have it killed.
func TestRetireRepeatsSIGTERM(t *testing.T) {
	sp := &fakeSpawner{deaf: true}
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		GracefulTimeout: time.Hour}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	old := sp.spawned()[0]
	p.Reload()
	eventually(t, "the old worker gone", func() bool {
		ws := p.Workers()
		return len(ws) == 1 && ws[0].PID != old.pid
	})
	select {
	case sig := <-old.signals:
		if sig != syscall.SIGTERM {
			t.Fatalf("first signal %v", sig)
		}
	default:
		t.Fatal("no signal recorded")
	}
	select {
	case sig := <-old.signals:
		if sig != syscall.SIGTERM {
			t.Fatalf("second signal %v, want SIGTERM again (not SIGKILL)", sig)
		}
	default:
		t.Fatal("SIGTERM was not repeated")
	}
}

// A retired worker still busy after the graceful timeout is killed; its
// replacement serves meanwhile.
func TestRetiredWorkerKilledAfterGracefulTimeout(t *testing.T) {
	sp := &fakeSpawner{busy: true}
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		GracefulTimeout: 100 * time.Millisecond}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	old, oldP := sp.spawned()[0], p.Workers()[0]
	p.Recycle(oldP, "test")
	select {
	case <-oldP.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the busy worker never exited")
	}
	eventually(t, "the replacement serving", func() bool {
		ws := p.Workers()
		return len(ws) == 1 && ws[0].PID != old.pid && ws[0].Booted()
	})
	var got []syscall.Signal
	for len(old.signals) > 0 {
		got = append(got, <-old.signals)
	}
	if len(got) == 0 || got[0] != syscall.SIGTERM || got[len(got)-1] != syscall.SIGKILL {
		t.Fatalf("signals %v, want SIGTERM first and SIGKILL last", got)
	}
}
