package arbiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gdirty/gdirty/compat"
)

// Router picks the worker for each call. It knows workers only as opaque
// targets with a set of apps, a readiness flag and a count of calls in
// flight; it never touches processes or sockets.
//
// Policy (from the brief): among ready workers hosting the app, the one
// with the fewest calls in flight, below its capacity (dirty_threads);
// ties go round-robin per app so successive calls rotate over the app's
// workers, as gunicorn documents. When every eligible worker is full or
// still booting, the call waits in a FIFO queue, bounded in time and
// optionally in length.
type Router[T comparable] struct {
	capacity int
	maxQueue int

	mu      sync.Mutex
	order   []*target[T] // spawn order
	byKey   map[T]*target[T]
	rr      map[string]int
	waiters []*waiter[T]
}

type target[T comparable] struct {
	key      T
	apps     map[string]bool
	ready    bool
	draining bool // takes no new calls (retiring)
	inflight int
}

// hosts reports whether the worker serves app ("" matches every worker).
func (t *target[T]) hosts(app string) bool { return app == "" || t.apps[app] }

type waiter[T comparable] struct {
	app  string
	got  chan T // buffered(1): the assigned target
	fail chan error
	done bool
}

// ErrQueueFull and friends are the router's refusals; the caller turns
// them into gunicorn error dicts.
var (
	ErrQueueFull = errors.New("dirty call queue is full")
)

// NoWorkersError says nothing could ever serve the call right now.
type NoWorkersError struct {
	App string
	// Pool is true when the pool has no worker at all.
	Pool bool
}

func (e *NoWorkersError) Error() string {
	if e.Pool {
		return "no dirty workers"
	}
	return "no dirty worker hosts " + e.App
}

// NewRouter returns a router; capacity is the number of calls one worker
// takes at once, maxQueue the longest wait queue (0 = unbounded).
func NewRouter[T comparable](capacity, maxQueue int) *Router[T] {
	if capacity < 1 {
		capacity = 1
	}
	return &Router[T]{capacity: capacity, maxQueue: maxQueue, byKey: map[T]*target[T]{}, rr: map[string]int{}}
}

// Add registers a (booting) worker and the apps it loads.
func (r *Router[T]) Add(key T, apps []string) {
	t := &target[T]{key: key, apps: map[string]bool{}}
	for _, a := range apps {
		t.apps[a] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byKey[key]; dup {
		return
	}
	r.byKey[key] = t
	r.order = append(r.order, t)
}

// Ready marks a worker as serving and hands it queued calls.
func (r *Router[T]) Ready(key T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.byKey[key]; t != nil {
		t.ready = true
		r.dispatchLocked()
	}
}

// Drain stops routing new calls to a worker; it keeps the calls it holds.
func (r *Router[T]) Drain(key T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.byKey[key]; t != nil {
		t.draining = true
	}
}

// Remove forgets a worker. Queued calls stay queued while another worker
// (possibly still booting) hosts their app; the others get "no workers
// available" at once instead of waiting for dirty_timeout.
func (r *Router[T]) Remove(key T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.byKey[key]
	if t == nil {
		return
	}
	delete(r.byKey, key)
	for i, o := range r.order {
		if o == t {
			r.order = append(r.order[:i:i], r.order[i+1:]...)
			break
		}
	}
	r.failOrphansLocked()
}

// Release returns one call slot of a worker and hands it to the queue.
func (r *Router[T]) Release(key T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.byKey[key]; t != nil && t.inflight > 0 {
		t.inflight--
		r.dispatchLocked()
	}
}

// Acquire returns a worker for app ("" = any worker, as gunicorn routes a
// call whose app_path is empty) with one slot reserved for the call;
// the slot comes back through Release. It waits (FIFO) while every
// eligible worker is busy or booting, until ctx ends.
func (r *Router[T]) Acquire(ctx context.Context, app string) (T, error) {
	var zero T
	r.mu.Lock()
	if len(r.order) == 0 {
		r.mu.Unlock()
		return zero, &NoWorkersError{App: app, Pool: true}
	}
	if !r.hostedLocked(app) {
		r.mu.Unlock()
		return zero, &NoWorkersError{App: app}
	}
	if len(r.waiters) == 0 {
		if t := r.pickLocked(app); t != nil {
			t.inflight++
			r.mu.Unlock()
			return t.key, nil
		}
	}
	if r.maxQueue > 0 && len(r.waiters) >= r.maxQueue {
		r.mu.Unlock()
		return zero, fmt.Errorf("%w (%d waiting)", ErrQueueFull, r.maxQueue)
	}
	w := &waiter[T]{app: app, got: make(chan T, 1), fail: make(chan error, 1)}
	r.waiters = append(r.waiters, w)
	r.dispatchLocked()
	r.mu.Unlock()

	select {
	case key := <-w.got:
		return key, nil
	case err := <-w.fail:
		return zero, err
	case <-ctx.Done():
		r.mu.Lock()
		if w.done {
			// Assigned at the same moment: give the slot back.
			r.mu.Unlock()
			key := <-w.got
			r.Release(key)
			return zero, ctx.Err()
		}
		w.done = true
		r.removeWaiterLocked(w)
		r.mu.Unlock()
		return zero, ctx.Err()
	}
}

// failOrphansLocked answers the waiters whose app no worker hosts any
// more (not even a booting one) with gunicorn's "no workers available":
// nothing is coming to serve them.
func (r *Router[T]) failOrphansLocked() {
	kept := r.waiters[:0]
	for _, w := range r.waiters {
		if !w.done && !r.hostedLocked(w.app) {
			w.done = true
			w.fail <- &NoWorkersError{App: w.app, Pool: len(r.order) == 0}
			continue
		}
		kept = append(kept, w)
	}
	for i := len(kept); i < len(r.waiters); i++ {
		r.waiters[i] = nil
	}
	r.waiters = kept
}

// TryAcquire is Acquire without waiting: ok is false when the call would
// have to queue. It spares the hot path a context and a timer.
func (r *Router[T]) TryAcquire(app string) (key T, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return key, false, &NoWorkersError{App: app, Pool: true}
	}
	if !r.hostedLocked(app) {
		return key, false, &NoWorkersError{App: app}
	}
	if len(r.waiters) > 0 {
		return key, false, nil
	}
	if t := r.pickLocked(app); t != nil {
		t.inflight++
		return t.key, true, nil
	}
	return key, false, nil
}

// Queued returns how many calls wait for a worker.
func (r *Router[T]) Queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiters)
}

func (r *Router[T]) hostedLocked(app string) bool {
	for _, t := range r.order {
		if t.hosts(app) && !t.draining {
			return true
		}
	}
	return false
}

// pickLocked chooses the ready worker for app with the fewest calls in
// flight (below capacity), scanning from the app's round-robin position.
func (r *Router[T]) pickLocked(app string) *target[T] {
	n := len(r.order)
	if n == 0 {
		return nil
	}
	start := r.rr[app] % n
	var best *target[T]
	bestIdx := 0
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		t := r.order[idx]
		if !t.ready || t.draining || !t.hosts(app) || t.inflight >= r.capacity {
			continue
		}
		if best == nil || t.inflight < best.inflight {
			best, bestIdx = t, idx
		}
	}
	if best != nil {
		r.rr[app] = bestIdx + 1
	}
	return best
}

// dispatchLocked hands free slots to waiters in arrival order. A waiter
// whose app has no free worker does not block later waiters for other apps.
func (r *Router[T]) dispatchLocked() {
	kept := r.waiters[:0]
	for _, w := range r.waiters {
		if w.done {
			continue
		}
		if t := r.pickLocked(w.app); t != nil {
			t.inflight++
			w.done = true
			w.got <- t.key
			continue
		}
		kept = append(kept, w)
	}
	for i := len(kept); i < len(r.waiters); i++ {
		r.waiters[i] = nil
	}
	r.waiters = kept
}

func (r *Router[T]) removeWaiterLocked(w *waiter[T]) {
	for i, o := range r.waiters {
		if o == w {
			r.waiters = append(r.waiters[:i], r.waiters[i+1:]...)
			return
		}
	}
}

// Snapshot describes one worker for status reports.
type Snapshot[T comparable] struct {
	Key      T
	Ready    bool
	Draining bool
	Inflight int
}

// Workers returns the router's view of each worker, in spawn order.
func (r *Router[T]) Workers() []Snapshot[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Snapshot[T], 0, len(r.order))
	for _, t := range r.order {
		out = append(out, Snapshot[T]{Key: t.key, Ready: t.ready, Draining: t.draining, Inflight: t.inflight})
	}
	return out
}

// errorFor turns a router refusal into the gunicorn error dict the client
// must receive.
func errorFor(err error, app string, timeout time.Duration) *compat.DirtyError {
	var nw *NoWorkersError
	switch {
	case errors.As(err, &nw) && nw.Pool:
		return compat.ErrNoWorkers()
	case errors.As(err, &nw):
		return compat.ErrNoWorkersForApp(app)
	case errors.Is(err, ErrQueueFull):
		e := compat.ErrNoWorkersForApp(app)
		e.Message = fmt.Sprintf("No workers available for app: %s (%v)", app, err)
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return compat.ErrTimeout("Timed out waiting for a free dirty worker", int64(timeout/time.Second))
	default:
		return compat.ErrGeneric("Cannot route request: %v", err)
	}
}
