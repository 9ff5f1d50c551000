package worker

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gdirty/gdirty/compat"
)

// Recycling decisions, on the fake spawner: calls are simulated by
// accounting them (callDone), memory by a fake meter.

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// fakeMeter is a TreeMemory whose readings the test sets.
type fakeMeter struct {
	mu  sync.Mutex
	rss map[int]int64
}

func (f *fakeMeter) set(pid int, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rss == nil {
		f.rss = map[int]int64{}
	}
	f.rss[pid] = v
}

func (f *fakeMeter) read(pids []int) (map[int]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int]int64{}
	for _, pid := range pids {
		if v, ok := f.rss[pid]; ok {
			out[pid] = v
		}
	}
	return out, nil
}

func serve(p *Pool, w *Process, n int) {
	for i := 0; i < n; i++ {
		p.callDone(w)
	}
}

func gone(p *Pool, pid int) func() bool {
	return func() bool {
		for _, w := range p.Workers() {
			if w.PID == pid {
				return false
			}
		}
		return true
	}
}

// assertReplacedReadyFirst checks that old retired only after its
// replacement was ready: the app never lacked a serving worker.
func assertReplacedReadyFirst(t *testing.T, rec *recorder, old, repl int) {
	t.Helper()
	ready := rec.index(fmt.Sprintf("ready %d", repl))
	retiring := rec.index(fmt.Sprintf("retiring %d", old))
	if ready < 0 || retiring < 0 || retiring < ready {
		t.Fatalf("worker %d retired (event %d) before its replacement %d was ready (event %d): %v",
			old, retiring, repl, ready, rec.snapshot())
	}
}

func TestRecycleByRequestsWithJitter(t *testing.T) {
	sp := &fakeSpawner{}
	var asked []int64
	var mu sync.Mutex
	jitter := func(n int64) int64 { mu.Lock(); asked = append(asked, n); mu.Unlock(); return 2 }
	p, rec := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A", Workers: 1}}, Workers: 1,
		Recycle: RecyclePolicy{MaxRequests: 3, MaxRequestsJitter: 4}, Jitter: jitter, MonitorInterval: time.Hour}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	w := p.Workers()[0]
	if w.RequestLimit() != 5 {
		t.Fatalf("limit %d, want max_requests 3 + jitter 2", w.RequestLimit())
	}
	serve(p, w, 4)
	p.checkRecycle()
	if n := len(sp.spawned()); n != 1 || w.RetireReason() != "" {
		t.Fatalf("recycled below its limit: %d spawns, reason %q", n, w.RetireReason())
	}
	serve(p, w, 1) // the 5th call wakes the pool at once
	eventually(t, "the worker replaced", gone(p, w.PID))
	eventually(t, "1 booted worker", allBooted(p, 1))
	repl := p.Workers()[0]
	assertReplacedReadyFirst(t, rec, w.PID, repl.PID)
	if w.RetireReason() != RecycleRequests {
		t.Fatalf("retire reason %q", w.RetireReason())
	}
	if got := sp.spawned()[1].apps; !reflect.DeepEqual(got, []string{"m:A"}) {
		t.Fatalf("replacement loads %v", got)
	}
	if repl.Requests() != 0 || repl.RequestLimit() != 5 {
		t.Fatalf("replacement starts with %d calls, limit %d", repl.Requests(), repl.RequestLimit())
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(asked, []int64{4, 4}) {
		t.Fatalf("jitter drawn with %v, want max_requests_jitter for each worker", asked)
	}
}

func TestDrawLimitStaysInBand(t *testing.T) {
	p := NewPool(PoolConfig{Recycle: RecyclePolicy{MaxRequests: 100, MaxRequestsJitter: 10}, Log: quietLog()}, &recorder{})
	seen := map[int64]bool{}
	for i := 0; i < 500; i++ {
		l := p.drawLimit()
		if l < 100 || l > 110 {
			t.Fatalf("limit %d outside [100, 110]", l)
		}
		seen[l] = true
	}
	// randint(0, jitter) includes both ends; 500 draws miss one of 11
	// values with probability ~1e-19.
	if len(seen) != 11 {
		t.Fatalf("drew %d distinct limits, want all 11", len(seen))
	}
	p = NewPool(PoolConfig{Recycle: RecyclePolicy{MaxRequestsJitter: 10}, Log: quietLog()}, &recorder{})
	if l := p.drawLimit(); l != 0 {
		t.Fatalf("jitter without max_requests gave limit %d", l)
	}
}

func TestRecycleByMemoryOnlyAfterServing(t *testing.T) {
	sp := &fakeSpawner{}
	meter := &fakeMeter{}
	p, rec := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		Recycle: RecyclePolicy{MaxMemory: 1000}, TreeMemory: meter.read, MonitorInterval: time.Hour}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	w := p.Workers()[0]
	meter.set(w.PID, 2000)
	p.checkRecycle()
	if len(sp.spawned()) != 1 {
		t.Fatal("a worker over the bound before its first call was recycled (would loop)")
	}
	serve(p, w, 1)
	meter.set(w.PID, 1000) // at the bound is not over it
	p.checkRecycle()
	if len(sp.spawned()) != 1 {
		t.Fatal("recycled at the bound")
	}
	meter.set(w.PID, 1001)
	p.checkRecycle()
	eventually(t, "the worker replaced", gone(p, w.PID))
	eventually(t, "1 booted worker", allBooted(p, 1))
	assertReplacedReadyFirst(t, rec, w.PID, p.Workers()[0].PID)
	if w.RetireReason() != RecycleMemory {
		t.Fatalf("retire reason %q", w.RetireReason())
	}
}

// Every worker is due at once; they are recycled one after another,
// each replacement starting only once the previous old worker is gone.
func TestRecycleOneWorkerOfAnAppAtATime(t *testing.T) {
	sp := &fakeSpawner{}
	meter := &fakeMeter{}
	specs := []compat.AppSpec{{ImportPath: "m:A"}, {ImportPath: "m:B", Workers: 1}}
	p, rec := startPool(t, PoolConfig{Apps: specs, Workers: 3,
		Recycle: RecyclePolicy{MaxMemory: 1000}, TreeMemory: meter.read, MonitorInterval: 5 * time.Millisecond}, sp)
	eventually(t, "3 booted workers", allBooted(p, 3))
	olds := p.Workers()
	for _, w := range olds {
		serve(p, w, 1)
		meter.set(w.PID, 5000)
	}
	eventually(t, "every old worker replaced", func() bool {
		if !allBooted(p, 3)() {
			return false
		}
		for _, o := range olds {
			if !gone(p, o.PID)() {
				return false
			}
		}
		return true
	})
	// In event order: at most one old worker of m:A in transition at a
	// time, i.e. each replacement starts after the previous old exited.
	inTransition := 0
	for _, ev := range rec.snapshot() {
		kind, pidText, _ := strings.Cut(ev, " ")
		var pid int
		fmt.Sscan(pidText, &pid)
		isOld := false
		for _, o := range olds {
			isOld = isOld || o.PID == pid
		}
		switch {
		case kind == "started" && !isOld:
			inTransition++
			if inTransition > 1 {
				t.Fatalf("two workers of m:A recycled at once: %v", rec.snapshot())
			}
		case kind == "exited" && isOld:
			inTransition--
		}
	}
	for i, o := range olds {
		repl := sp.spawned()[3+i]
		assertReplacedReadyFirst(t, rec, o.PID, repl.pid)
		if o.RetireReason() != RecycleMemory {
			t.Fatalf("worker %d retired for %q", o.PID, o.RetireReason())
		}
	}
	// m:B's only host was replaced by a worker that hosts it too.
	hostsB := 0
	for _, w := range p.Workers() {
		for _, a := range w.Apps {
			if a == "m:B" {
				hostsB++
			}
		}
	}
	if hostsB != 1 {
		t.Fatalf("%d workers host m:B after recycling", hostsB)
	}
}

func TestRecycleByTTL(t *testing.T) {
	sp := &fakeSpawner{}
	ttl := 150 * time.Millisecond
	p, rec := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		Recycle: RecyclePolicy{TTL: ttl}, MonitorInterval: 5 * time.Millisecond}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	w := p.Workers()[0]
	eventually(t, "the worker replaced", gone(p, w.PID))
	if lived := time.Since(w.Started); lived < ttl {
		t.Fatalf("recycled after %s, before its ttl %s", lived, ttl)
	}
	if w.RetireReason() != RecycleTTL {
		t.Fatalf("retire reason %q", w.RetireReason())
	}
	eventually(t, "1 booted worker", allBooted(p, 1))
	assertReplacedReadyFirst(t, rec, w.PID, sp.spawned()[1].pid)
}

func TestRecycleByIdleTTL(t *testing.T) {
	sp := &fakeSpawner{}
	idle := 100 * time.Millisecond
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 2,
		Recycle: RecyclePolicy{IdleTTL: idle}, MonitorInterval: 5 * time.Millisecond}, sp)
	eventually(t, "2 booted workers", allBooted(p, 2))
	used, unused := p.Workers()[0], p.Workers()[1]
	serve(p, used, 1)
	lastCall := time.Now()
	eventually(t, "the idle worker replaced", gone(p, used.PID))
	if d := time.Since(lastCall); d < idle {
		t.Fatalf("recycled %s after its last call, before worker_idle_ttl %s", d, idle)
	}
	if used.RetireReason() != RecycleIdle {
		t.Fatalf("retire reason %q", used.RetireReason())
	}
	if gone(p, unused.PID)() || unused.RetireReason() != "" {
		t.Fatal("a worker that never served a call was recycled for idleness")
	}
}

// A replacement that fails to boot leaves the old worker serving; the
// recycle is tried again after the boot-failure backoff.
func TestRecycleRetriedAfterReplacementFails(t *testing.T) {
	sp := &fakeSpawner{bootFail: func(n int) bool { return n == 2 }}
	p, rec := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		Recycle: RecyclePolicy{MaxRequests: 1}, MonitorInterval: 5 * time.Millisecond}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	w := p.Workers()[0]
	serve(p, w, 1)
	eventually(t, "a second replacement", func() bool { return len(sp.spawned()) >= 3 })
	eventually(t, "the worker replaced", gone(p, w.PID))
	if rec.index(fmt.Sprintf("retiring %d", w.PID)) < rec.index(fmt.Sprintf("exited %d", sp.spawned()[1].pid)) {
		t.Fatalf("old worker retired before its failed replacement was known: %v", rec.snapshot())
	}
	assertReplacedReadyFirst(t, rec, w.PID, sp.spawned()[2].pid)
}

// A reload while a recycle replacement boots (from the old code) drops
// that replacement and reloads the worker instead; the worker still
// retires for its recycle reason.
func TestReloadSupersedesABootingRecycleReplacement(t *testing.T) {
	sp := &fakeSpawner{slow: func(n int) bool { return n == 2 }, release: make(chan struct{})}
	defer close(sp.release)
	p, rec := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 1,
		Recycle: RecyclePolicy{MaxRequests: 1}, MonitorInterval: time.Hour}, sp)
	eventually(t, "1 booted worker", allBooted(p, 1))
	w := p.Workers()[0]
	serve(p, w, 1)
	eventually(t, "a recycle replacement booting", func() bool { return len(sp.spawned()) == 2 })
	p.Reload()
	eventually(t, "the worker reloaded", func() bool { return gone(p, w.PID)() && allBooted(p, 1)() })
	stale, fresh := sp.spawned()[1], sp.spawned()[2]
	if got := p.Workers()[0].PID; got != fresh.pid {
		t.Fatalf("serving worker %d, want the reload's replacement %d (events %v)", got, fresh.pid, rec.snapshot())
	}
	eventually(t, "the stale replacement gone", gone(p, stale.pid))
	assertReplacedReadyFirst(t, rec, w.PID, fresh.pid)
	if w.RetireReason() != RecycleRequests {
		t.Fatalf("old worker retired for %q", w.RetireReason())
	}
}

func TestDevicesFollowTheirWorker(t *testing.T) {
	sp := &fakeSpawner{}
	plan := &DevicePlan{IDs: []string{"0", "1", "2", "3"}, PerWorker: 2, Env: "CUDA_VISIBLE_DEVICES"}
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 2, Devices: plan,
		Recycle: RecyclePolicy{MaxRequests: 1}, MonitorInterval: time.Hour}, sp)
	eventually(t, "2 booted workers", allBooted(p, 2))
	devs := func() map[int]string {
		out := map[int]string{}
		for _, w := range p.Workers() {
			out[w.PID] = strings.Join(w.Devices, ",")
		}
		return out
	}
	start := devs()
	if got := sortedValues(start); !reflect.DeepEqual(got, []string{"0,1", "2,3"}) {
		t.Fatalf("devices %v, want 0,1 and 2,3", got)
	}
	if env := sp.options()[0].Env; !reflect.DeepEqual(env, []string{"CUDA_VISIBLE_DEVICES=0,1"}) {
		t.Fatalf("first worker env %v", env)
	}

	// Crash: the respawn gets the dead worker's devices.
	first := p.Workers()[0]
	sp.spawned()[0].exit(exitStatus{code: -1, signal: syscall.SIGKILL, known: true})
	eventually(t, "a respawn", func() bool { return gone(p, first.PID)() && allBooted(p, 2)() })
	if got := sortedValues(devs()); !reflect.DeepEqual(got, []string{"0,1", "2,3"}) {
		t.Fatalf("after a crash: devices %v", got)
	}

	// Recycle: the replacement gets the recycled worker's devices.
	w := p.Workers()[1]
	before := strings.Join(w.Devices, ",")
	serve(p, w, 1)
	eventually(t, "the worker recycled", func() bool { return gone(p, w.PID)() && allBooted(p, 2)() })
	repl := p.Workers()[1]
	if got := strings.Join(repl.Devices, ","); got != before {
		t.Fatalf("recycled worker had %s, its replacement %s", before, got)
	}

	// Reload: every replacement gets its predecessor's devices.
	old := devs()
	p.Reload()
	eventually(t, "all workers reloaded", func() bool {
		if !allBooted(p, 2)() {
			return false
		}
		for pid := range old {
			if !gone(p, pid)() {
				return false
			}
		}
		return true
	})
	if got := sortedValues(devs()); !reflect.DeepEqual(got, []string{"0,1", "2,3"}) {
		t.Fatalf("after reload: devices %v", got)
	}

	// No free device: scaling up is refused with a reason.
	if r := p.ScaleUp(1); r.Changed != 0 || !strings.Contains(r.Reason, "device") {
		t.Fatalf("scale up with every device taken: %+v", r)
	}
}

func sortedValues(m map[int]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func TestSharedDevicesWrapAround(t *testing.T) {
	sp := &fakeSpawner{}
	plan := &DevicePlan{IDs: []string{"a", "b"}, PerWorker: 1, Env: "X", Shared: true}
	p, _ := startPool(t, PoolConfig{Apps: []compat.AppSpec{{ImportPath: "m:A"}}, Workers: 3, Devices: plan}, sp)
	eventually(t, "3 booted workers", allBooted(p, 3))
	var got []string
	for _, w := range p.Workers() {
		got = append(got, strings.Join(w.Devices, ","))
	}
	if !reflect.DeepEqual(got, []string{"a", "b", "a"}) {
		t.Fatalf("shared devices %v, want a, b, a", got)
	}
}

func TestDevicePlanCheck(t *testing.T) {
	ok := DevicePlan{IDs: []string{"0", "1", "2", "3"}, PerWorker: 2, Env: DefaultDevicesEnv}
	if err := ok.Check(2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		plan    DevicePlan
		workers int
		want    string
	}{
		{ok, 3, "3 workers x 2 device(s) each need 6 devices, only 4 given"},
		{DevicePlan{IDs: []string{"0", "0"}, PerWorker: 1, Env: "X"}, 1, "listed twice"},
		{DevicePlan{IDs: []string{"0,1"}, PerWorker: 1, Env: "X"}, 1, "without commas"},
		{DevicePlan{IDs: []string{"0"}, PerWorker: 2, Env: "X"}, 1, "only 1 devices"},
		{DevicePlan{IDs: []string{"0"}, PerWorker: 0, Env: "X"}, 1, ">= 1"},
		{DevicePlan{IDs: []string{"0"}, PerWorker: 1, Env: "A=B"}, 1, "not an environment variable name"},
		{DevicePlan{PerWorker: 1, Env: "X"}, 1, "no devices"},
	} {
		err := c.plan.Check(c.workers)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v with %d workers: %v, want %q", c.plan, c.workers, err, c.want)
		}
	}
	shared := ok
	shared.Shared = true
	if err := shared.Check(5); err != nil {
		t.Fatalf("shared devices refused: %v", err)
	}
}
