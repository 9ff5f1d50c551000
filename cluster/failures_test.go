package cluster

// Remote calls that fail: the client goes away, the worker is silent past
// dirty_timeout, the node dies or stops, the client stops reading.

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/cluster/natstest"
	"github.com/gdirty/gdirty/compat"
)

func TestClientGoneCancelsRemoteStream(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	startNode(t, srv.URL(), fake, []string{"S"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	a.opts.Window = 64 << 10
	waitHosted(t, a.nc, "S")
	// The client takes 100 KiB of an endless stream, then goes away.
	c := &client{fail: func(n int) bool { return n > 100<<10 }}
	if out := a.Call("S", 1, []byte("S"), c); out != arbiter.OutcomeClient {
		t.Fatalf("outcome %s", out)
	}
	waitFor(t, "the stream to be cancelled on the node", func() bool { return fake.cancels() == 1 })
}

func TestDirtyTimeoutAppliesAndCancels(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	startNode(t, srv.URL(), fake, []string{"h"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 4*time.Second)
	waitHosted(t, a.nc, "h")
	c := &client{}
	// The node heartbeats the call (liveness 1.5s) for longer than the
	// liveness bound: only dirty_timeout ends it.
	if out := a.Call("h", 4, []byte("h"), c); out != arbiter.OutcomeTimeout {
		t.Fatalf("outcome %s", out)
	}
	typ, _ := errorOf(t, c.frames(t)[0].p)
	if typ != "DirtyTimeoutError" {
		t.Fatalf("got %s", typ)
	}
	waitFor(t, "the node to cancel the call", func() bool { return fake.cancels() == 1 })
}

func TestNodeDyingMidCall(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	b := startNode(t, srv.URL(), fake, []string{"H"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	waitHosted(t, a.nc, "H")
	c := &client{}
	done := make(chan string, 1)
	start := time.Now()
	go func() { done <- a.Call("H", 8, []byte("H"), c) }()
	waitFor(t, "the first chunk", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.buf.Len() > 0
	})
	b.nc.Close() // the node's connection dies: no more heartbeats
	select {
	case out := <-done:
		if out != arbiter.OutcomeWorker {
			t.Fatalf("outcome %s", out)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer within 5s of the node dying")
	}
	fr := c.frames(t)
	if len(fr) != 2 || fr[0].h.Type != compat.MsgChunk {
		t.Fatalf("got %d frames", len(fr))
	}
	typ, msg := errorOf(t, fr[1].p)
	if typ != "DirtyWorkerError" || !strings.Contains(msg, "lost") {
		t.Fatalf("got %s %q", typ, msg)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("answered after %s, before the liveness bound", d)
	}
}

// A client that stops reading holds the node to the window: the node stops
// reading the stream from its arbiter (whose worker then blocks), instead
// of buffering it anywhere.
func TestSlowClientHoldsTheNodeToTheWindow(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	startNode(t, srv.URL(), fake, []string{"S"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	const window = 256 << 10
	a.opts.Window = window
	waitHosted(t, a.nc, "S")
	release := make(chan struct{})
	c := &client{fail: func(n int) bool {
		if n > 32<<10 {
			<-release // the client stops reading
			return true
		}
		return false
	}}
	done := make(chan string, 1)
	go func() { done <- a.Call("S", 1, []byte("S"), c) }()
	// The node runs ahead up to the window (plus what sits in the pipe and
	// its read buffer), then stops.
	slack := int64(window + 32<<10 + 128<<10)
	waitFor(t, "the node to fill the window", func() bool { return fake.produced.Load() >= window })
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if p := fake.produced.Load(); p > slack {
			t.Fatalf("node read %d stream bytes for a client stuck at 32 KiB (window %d)", p, window)
		}
	}
	close(release)
	if out := <-done; out != arbiter.OutcomeClient {
		t.Fatalf("outcome %s", out)
	}
	waitFor(t, "the stream to be cancelled", func() bool { return fake.cancels() == 1 })
}

// A node dying in the middle of a large frame: the client connection is
// closed (Abort), never given a frame after half a frame.
func TestNodeDyingMidFrameClosesTheClient(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	b := startNode(t, srv.URL(), fake, []string{"m"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	waitHosted(t, a.nc, "m")
	c := &client{}
	done := make(chan string, 1)
	go func() { done <- a.Call("m", 1, []byte("m"), c) }()
	waitFor(t, "part of the frame to reach the client", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.buf.Len() > compat.HeaderSize
	})
	b.nc.Close()
	if out := <-done; out != arbiter.OutcomeWorker {
		t.Fatalf("outcome %s", out)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.aborted || c.buf.Len() >= compat.HeaderSize+3<<20 {
		t.Fatalf("aborted=%v after %d bytes", c.aborted, c.buf.Len())
	}
	if h, err := compat.ParseHeader(c.buf.Bytes()[:compat.HeaderSize]); err != nil || h.Type != compat.MsgResponse {
		t.Fatalf("first frame %v %v", h, err)
	}
}

// A node shutting down declines calls: they go to another node, or fail
// at once with no workers available, never wait for the liveness bound.
func TestStoppingNodeDeclines(t *testing.T) {
	srv := natstest.Start(t)
	var closing atomic.Bool
	startNode(t, srv.URL(), newFake(), []string{"e"}, 0, func(_ *Options, l *Local) { l.Closing = closing.Load })
	a := startNode(t, srv.URL(), nil, nil, 0)
	waitHosted(t, a.nc, "e")
	closing.Store(true)
	c := &client{}
	start := time.Now()
	if out := a.Call("e", 1, []byte("e"), c); out != arbiter.OutcomeNoWorkers {
		t.Fatalf("outcome %s", out)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("took %s", d)
	}
	typ, _ := errorOf(t, c.frames(t)[0].p)
	if typ != "DirtyNoWorkersAvailableError" {
		t.Fatalf("got %s", typ)
	}
}

// A node that takes calls off the wire but never picks them up (stopped,
// hung) costs a caller one pick-up wait: the retry goes to another node
// that announced the app, on that node's own subject, so every call ends
// on the live node.
func TestStuckNodeCallsGoToAnother(t *testing.T) {
	srv := natstest.Start(t)
	startNode(t, srv.URL(), newFake(), []string{"e"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	waitFor(t, "A to hear that B hosts e", func() bool { return len(a.othersHosting("e")) == 1 })
	hole, err := a.nc.QueueSubscribe(newSubjects(DefaultName).call("e"), queueGroup, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Unsubscribe()
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		c := &client{}
		if out := a.Call("e", 1, []byte("e1"), c); out != arbiter.OutcomeOK {
			t.Fatalf("call %d: outcome %s", i, out)
		}
	}
}
