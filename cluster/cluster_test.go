package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/cluster/natstest"
	"github.com/gdirty/gdirty/compat"
)

// fakeArbiter stands in for a node's own arbiter behind Local.Dial (the
// real one needs Python workers; tests/test_cluster.py runs those). It
// answers each REQUEST by the payload's first byte:
//
//	'e' RESPONSE with the payload reversed
//	's' N CHUNK frames (N = byte 1), then END
//	'h' nothing (a hung worker); records that the call was cancelled
//	'b' RESPONSE with the payload as is (for large payloads)
type fakeArbiter struct {
	mu        sync.Mutex
	cancelled int
	started   chan struct{}
	produced  atomic.Int64 // stream bytes the node has read ('S')
}

func newFake() *fakeArbiter { return &fakeArbiter{started: make(chan struct{}, 16)} }

func (f *fakeArbiter) dial() (net.Conn, error) {
	a, b := net.Pipe()
	go f.serve(b)
	return a, nil
}

func (f *fakeArbiter) serve(conn net.Conn) {
	defer conn.Close()
	h, p, err := compat.ReadFrame(conn, nil)
	if err != nil || len(p) == 0 {
		return
	}
	f.started <- struct{}{}
	switch p[0] {
	case 'e':
		out := make([]byte, len(p))
		for i := range p {
			out[i] = p[len(p)-1-i]
		}
		_, _ = conn.Write(compat.AppendFrame(nil, compat.MsgResponse, h.ID, out))
	case 'b':
		_, _ = conn.Write(compat.AppendFrame(nil, compat.MsgResponse, h.ID, p))
	case 's':
		for i := 0; i < int(p[1]); i++ {
			chunk := binary.BigEndian.AppendUint32([]byte{'c'}, uint32(i))
			if _, err := conn.Write(compat.AppendFrame(nil, compat.MsgChunk, h.ID, chunk)); err != nil {
				f.mu.Lock()
				f.cancelled++
				f.mu.Unlock()
				return
			}
		}
		_, _ = conn.Write(compat.AppendFrame(nil, compat.MsgEnd, h.ID, nil))
	case 'S':
		chunk := make([]byte, 1024)
		for {
			n, err := conn.Write(compat.AppendFrame(nil, compat.MsgChunk, h.ID, chunk))
			f.produced.Add(int64(n))
			if err != nil {
				f.mu.Lock()
				f.cancelled++
				f.mu.Unlock()
				return
			}
		}
	case 'm':
		// Half of a 3 MiB answer, then silence (the node dies meanwhile).
		var hdr [compat.HeaderSize]byte
		compat.PutHeader(hdr[:], compat.Header{Type: compat.MsgResponse, Length: 3 << 20, ID: h.ID})
		_, _ = conn.Write(hdr[:])
		_, _ = conn.Write(make([]byte, 3<<19))
		_, _ = io.Copy(io.Discard, conn)
	case 'H':
		// One chunk, then a hung stream.
		_, _ = conn.Write(compat.AppendFrame(nil, compat.MsgChunk, h.ID, []byte("c")))
		_, _ = io.Copy(io.Discard, conn)
	case 'h':
		_, _ = io.Copy(io.Discard, conn) // until the caller side closes
		f.mu.Lock()
		f.cancelled++
		f.mu.Unlock()
	}
}

func (f *fakeArbiter) cancels() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancelled
}

type testNode struct {
	*Node
	nc *nats.Conn
}

func startNode(t testing.TB, url string, fake *fakeArbiter, apps []string, timeout time.Duration, mods ...func(*Options, *Local)) testNode {
	t.Helper()
	// Short enough for quick failure tests, long enough for a loaded CI
	// machine running -race (heartbeats every 375ms).
	opts := Options{URL: url, Liveness: 1500 * time.Millisecond}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(&opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	local := Local{Hosted: func() []string { return apps }, Timeout: timeout, Workers: func() int { return len(apps) }}
	if fake != nil {
		local.Dial = fake.dial
	}
	for _, m := range mods {
		m(&opts, &local)
	}
	n, err := NewNode(nc, opts, local, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); nc.Close() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return testNode{n, nc}
}

// client collects what a remote call writes to the client.
type client struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	fail    func(written int) bool // make a write fail (client gone)
	aborted bool
}

// Abort records that the call closed the client connection.
func (c *client) Abort() {
	c.mu.Lock()
	c.aborted = true
	c.mu.Unlock()
}

func (c *client) Write(b net.Buffers) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil && c.fail(c.buf.Len()) {
		return false
	}
	for _, p := range b {
		c.buf.Write(p)
	}
	return true
}

// frames parses what the client received.
func (c *client) frames(t *testing.T) []struct {
	h compat.Header
	p []byte
} {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	r := bytes.NewReader(c.buf.Bytes())
	var out []struct {
		h compat.Header
		p []byte
	}
	for r.Len() > 0 {
		h, p, err := compat.ReadFrame(r, nil)
		if err != nil {
			t.Fatalf("client got a bad frame: %v", err)
		}
		out = append(out, struct {
			h compat.Header
			p []byte
		}{h, append([]byte(nil), p...)})
	}
	return out
}

func errorOf(t *testing.T, payload []byte) (string, string) {
	t.Helper()
	v, err := compat.Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*compat.Dict)
	ev, _ := d.Get("error")
	ed := ev.(*compat.Dict)
	typ, _ := ed.Get("error_type")
	msg, _ := ed.Get("message")
	return typ.(string), msg.(string)
}

// waitHosted waits until a call subject has a responder.
func waitHosted(t testing.TB, nc *nats.Conn, app string) {
	t.Helper()
	subj := newSubjects(DefaultName).call(app)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// A request with no data: a node answers with an ack to a reply
		// nobody reads; no responders means not yet.
		_, err := nc.Request(subj, nil, 200*time.Millisecond)
		if !errors.Is(err, nats.ErrNoResponders) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no node hosts %q", app)
}

func TestRemoteEchoByteIdentical(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	b := startNode(t, srv.URL(), fake, []string{"mod:App", "weird.app *>"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	for _, app := range []string{"mod:App", "weird.app *>", ""} {
		waitHosted(t, a.nc, app)
		c := &client{}
		payload := []byte("e\x00\x01hello\xff")
		if out := a.Call(app, 77, payload, c); out != arbiter.OutcomeOK {
			t.Fatalf("%q: outcome %s", app, out)
		}
		fr := c.frames(t)
		if len(fr) != 1 || fr[0].h.Type != compat.MsgResponse || fr[0].h.ID != 77 || string(fr[0].p) != "\xffolleh\x01\x00e" {
			t.Fatalf("%q: got %+v", app, fr)
		}
	}
	_ = b
}

func TestNoRespondersAtOnce(t *testing.T) {
	srv := natstest.Start(t)
	a := startNode(t, srv.URL(), nil, nil, 0)
	c := &client{}
	start := time.Now()
	if out := a.Call("nobody:Hosts", 5, []byte("e"), c); out != arbiter.OutcomeNoWorkers {
		t.Fatalf("outcome %s", out)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Fatalf("took %s: no responders must answer at once", d)
	}
	fr := c.frames(t)
	typ, msg := errorOf(t, fr[0].p)
	if fr[0].h.ID != 5 || typ != "DirtyNoWorkersAvailableError" || msg != "No workers available for app: nobody:Hosts" {
		t.Fatalf("got %s %q", typ, msg)
	}
}

func TestLargePayloadsInParts(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	startNode(t, srv.URL(), fake, []string{"big"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	waitHosted(t, a.nc, "big")
	payload := make([]byte, 5<<20+123) // 1 MiB max_payload: 6 parts each way
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	payload[0] = 'b'
	c := &client{}
	if out := a.Call("big", 9, payload, c); out != arbiter.OutcomeOK {
		t.Fatalf("outcome %s", out)
	}
	fr := c.frames(t)
	if len(fr) != 1 || !bytes.Equal(fr[0].p, payload) {
		t.Fatalf("large answer differs (%d frames)", len(fr))
	}
}

func TestStreamOrderedWithFlowControl(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	startNode(t, srv.URL(), fake, []string{"s"}, 0)
	a := startNode(t, srv.URL(), nil, nil, 0)
	a.opts.Window = 64 << 10 // many credit rounds
	waitHosted(t, a.nc, "s")
	c := &client{}
	if out := a.Call("s", 3, []byte{'s', 200}, c); out != arbiter.OutcomeOK {
		t.Fatalf("outcome %s", out)
	}
	fr := c.frames(t)
	if len(fr) != 201 || fr[200].h.Type != compat.MsgEnd {
		t.Fatalf("got %d frames", len(fr))
	}
	for i := 0; i < 200; i++ {
		if fr[i].h.Type != compat.MsgChunk || binary.BigEndian.Uint32(fr[i].p[1:]) != uint32(i) {
			t.Fatalf("chunk %d out of order", i)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSpillOnlyToAFreeNode(t *testing.T) {
	srv := natstest.Start(t)
	fake := newFake()
	var free atomic.Bool
	startNode(t, srv.URL(), fake, []string{"e"}, 0, func(_ *Options, l *Local) {
		l.Free = func(app string) bool { return app == "e" && free.Load() }
	})
	a := startNode(t, srv.URL(), nil, nil, 0, func(o *Options, _ *Local) { o.Spill = true })
	waitFor(t, "A to hear that B hosts e", func() bool { return len(a.othersHosting("e")) == 1 })

	c := &client{}
	if _, ok := a.Spill("e", 1, []byte("e1"), c); ok || c.buf.Len() != 0 {
		t.Fatalf("a busy node took a spilled call (ok=%v, %d bytes written)", ok, c.buf.Len())
	}
	if _, ok := a.Spill("nobody", 1, []byte("e1"), c); ok || c.buf.Len() != 0 {
		t.Fatal("a spill with no node hosting the app must stay local")
	}
	free.Store(true)
	out, ok := a.Spill("e", 2, []byte("e12"), c)
	if !ok || out != arbiter.OutcomeOK {
		t.Fatalf("free node: ok=%v outcome=%s", ok, out)
	}
	if fr := c.frames(t); len(fr) != 1 || string(fr[0].p) != "21e" || fr[0].h.ID != 2 {
		t.Fatalf("got %+v", fr)
	}
}

// Any app path becomes one valid subject token and comes back unchanged.
func FuzzAppToken(f *testing.F) {
	for _, s := range []string{"", "mod:App", "a.b *>\t", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, app string) {
		tok := appToken(app)
		for _, r := range tok {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				t.Fatalf("token %q of %q has %q", tok, app, r)
			}
		}
		if back, ok := appFromToken(tok); !ok || back != app {
			t.Fatalf("%q -> %q -> %q", app, tok, back)
		}
		_, _ = appFromToken(app) // arbitrary input: no panic
	})
}
