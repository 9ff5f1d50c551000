package arbiter

import (
	"context"
	"errors"
	"testing"
	"time"
)

func readyRouter(capacity int, workers map[string][]string, order ...string) *Router[string] {
	r := NewRouter[string](capacity, 0)
	for _, k := range order {
		r.Add(k, workers[k])
		r.Ready(k)
	}
	return r
}

func mustAcquire(t *testing.T, r *Router[string], app string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	k, err := r.Acquire(ctx, app)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", app, err)
	}
	return k
}

func TestRouterRefusals(t *testing.T) {
	tests := []struct {
		name     string
		workers  map[string][]string
		app      string
		wantPool bool
	}{
		{"empty pool", nil, "a:A", true},
		{"app hosted nowhere", map[string][]string{"w1": {"a:A"}}, "b:B", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRouter[string](1, 0)
			for k, apps := range tc.workers {
				r.Add(k, apps)
				r.Ready(k)
			}
			_, err := r.Acquire(context.Background(), tc.app)
			var nw *NoWorkersError
			if !errors.As(err, &nw) || nw.Pool != tc.wantPool {
				t.Fatalf("err = %v, want NoWorkersError{Pool: %v}", err, tc.wantPool)
			}
			de := errorFor(err, tc.app, 0)
			wantType := "DirtyNoWorkersAvailableError"
			if tc.wantPool {
				wantType = "DirtyError"
			}
			if de.Type != wantType {
				t.Fatalf("error type %q, want %q", de.Type, wantType)
			}
		})
	}
}

func TestRouterRoundRobinWhenIdle(t *testing.T) {
	r := readyRouter(1, map[string][]string{"w1": {"a"}, "w2": {"a"}, "w3": {"a"}}, "w1", "w2", "w3")
	var got []string
	for i := 0; i < 6; i++ {
		k := mustAcquire(t, r, "a")
		got = append(got, k)
		r.Release(k)
	}
	want := []string{"w1", "w2", "w3", "w1", "w2", "w3"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sequence %v, want %v", got, want)
		}
	}
}

func TestRouterOnlyEligibleWorkers(t *testing.T) {
	r := readyRouter(4, map[string][]string{"w1": {"all", "one"}, "w2": {"all"}, "w3": {"all"}}, "w1", "w2", "w3")
	for i := 0; i < 5; i++ {
		k := mustAcquire(t, r, "one")
		if k != "w1" {
			t.Fatalf("app 'one' routed to %s, only w1 hosts it", k)
		}
		r.Release(k)
	}
}

func TestRouterLeastOutstanding(t *testing.T) {
	r := readyRouter(4, map[string][]string{"w1": {"a"}, "w2": {"a"}}, "w1", "w2")
	first := mustAcquire(t, r, "a")  // w1 holds 1
	second := mustAcquire(t, r, "a") // w2 holds 1
	third := mustAcquire(t, r, "a")  // tie, rotation: w1 holds 2
	if first != "w1" || second != "w2" || third != "w1" {
		t.Fatalf("got %s %s %s, want w1 w2 w1", first, second, third)
	}
	// The rotation now points at w2, but w2 must win because it is the
	// least loaded: make that the only reason by releasing w2's call so
	// w2 holds 0 and w1 holds 2, then pick twice.
	r.Release(second)
	if k := mustAcquire(t, r, "a"); k != "w2" {
		t.Fatalf("picked %s, want least loaded w2", k)
	}
	// Now w1 holds 2, w2 holds 1; the rotation points at w1, yet the
	// least loaded w2 must be picked.
	if k := mustAcquire(t, r, "a"); k != "w2" {
		t.Fatalf("picked %s, want least loaded w2", k)
	}
}

func TestRouterQueueWaitsForFreeSlot(t *testing.T) {
	r := readyRouter(1, map[string][]string{"w1": {"a"}}, "w1")
	held := mustAcquire(t, r, "a")
	got := make(chan string, 1)
	go func() { got <- mustAcquire(t, r, "a") }()
	waitFor(t, func() bool { return r.Queued() == 1 })
	select {
	case k := <-got:
		t.Fatalf("second call got %s while the only slot was held", k)
	default:
	}
	r.Release(held)
	select {
	case k := <-got:
		if k != "w1" {
			t.Fatalf("got %s", k)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("queued call not dispatched after Release")
	}
}

func TestRouterQueueTimeoutReturnsNoSlot(t *testing.T) {
	r := readyRouter(1, map[string][]string{"w1": {"a"}}, "w1")
	held := mustAcquire(t, r, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := r.Acquire(ctx, "a")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline", err)
	}
	if de := errorFor(err, "a", 5*time.Second); de.Type != "DirtyTimeoutError" {
		t.Fatalf("queue timeout maps to %s", de.Type)
	}
	if r.Queued() != 0 {
		t.Fatalf("timed-out waiter still queued")
	}
	r.Release(held)
	if k := mustAcquire(t, r, "a"); k != "w1" {
		t.Fatalf("slot leaked: got %s", k)
	}
}

func TestRouterMaxQueue(t *testing.T) {
	r := NewRouter[string](1, 1)
	r.Add("w1", []string{"a"})
	r.Ready("w1")
	mustAcquire(t, r, "a")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = r.Acquire(ctx, "a")
	}()
	waitFor(t, func() bool { return r.Queued() == 1 })
	_, err := r.Acquire(context.Background(), "a")
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v, want ErrQueueFull", err)
	}
	if de := errorFor(err, "a", 0); de.Type != "DirtyNoWorkersAvailableError" {
		t.Fatalf("queue full maps to %s", de.Type)
	}
}

func TestRouterBootingWorkerServesQueuedCalls(t *testing.T) {
	r := NewRouter[string](1, 0)
	r.Add("w1", []string{"a"})
	got := make(chan string, 1)
	go func() { got <- mustAcquire(t, r, "a") }()
	waitFor(t, func() bool { return r.Queued() == 1 })
	r.Ready("w1")
	select {
	case k := <-got:
		if k != "w1" {
			t.Fatalf("got %s", k)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("call waiting for a booting worker not dispatched on Ready")
	}
}

func TestRouterWaiterForOtherAppNotBlocked(t *testing.T) {
	r := readyRouter(1, map[string][]string{"w1": {"a"}, "w2": {"b"}}, "w1", "w2")
	mustAcquire(t, r, "a") // w1 full
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = r.Acquire(ctx, "a")
	}()
	waitFor(t, func() bool { return r.Queued() == 1 })
	if k := mustAcquire(t, r, "b"); k != "w2" {
		t.Fatalf("got %s", k)
	}
}

func TestRouterRemovedWorkerNotPicked(t *testing.T) {
	r := readyRouter(1, map[string][]string{"w1": {"a"}, "w2": {"a"}}, "w1", "w2")
	r.Remove("w1")
	for i := 0; i < 3; i++ {
		k := mustAcquire(t, r, "a")
		if k != "w2" {
			t.Fatalf("removed worker picked: %s", k)
		}
		r.Release(k)
	}
	r.Remove("w2")
	_, err := r.Acquire(context.Background(), "a")
	var nw *NoWorkersError
	if !errors.As(err, &nw) || !nw.Pool {
		t.Fatalf("err = %v, want empty pool", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 2s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRouterFailsWaitersWhenNoHostRemains(t *testing.T) {
	r := NewRouter[string](1, 0)
	r.Add("w1", []string{"a"}) // booting, never ready
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := r.Acquire(ctx, "a")
		got <- err
	}()
	waitFor(t, func() bool { return r.Queued() == 1 })
	r.Remove("w1") // its only host failed to boot
	select {
	case err := <-got:
		var nw *NoWorkersError
		if !errors.As(err, &nw) {
			t.Fatalf("err = %v, want NoWorkersError", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waiter kept waiting with no host left for its app")
	}
}
