package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdirty/gdirty/compat"
)

type countEvents struct{ done atomic.Int32 }

func (*countEvents) Ready(int, []string) {}
func (*countEvents) Heartbeat()          {}
func (e *countEvents) CallDone()         { e.done.Add(1) }

// linkPeer is the worker's end of a link, driven by the test.
type linkPeer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func newTestLink(t *testing.T) (*Link, *linkPeer, *countEvents, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	ev := &countEvents{}
	l := newLink(a, 4242, ev)
	runErr := make(chan error, 1)
	go func() {
		runErr <- l.run(func(err error) *compat.DirtyError { return compat.ErrGeneric("worker died: %v", err) })
	}()
	t.Cleanup(func() { l.Close(); b.Close() })
	return l, &linkPeer{t: t, conn: b, r: bufio.NewReader(b)}, ev, runErr
}

func (w *linkPeer) read() (compat.Header, []byte) {
	w.t.Helper()
	_ = w.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hb [compat.HeaderSize]byte
	if _, err := io.ReadFull(w.r, hb[:]); err != nil {
		w.t.Fatalf("fake worker read: %v", err)
	}
	_, _, h := compat.RawHeader(hb[:])
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(w.r, p); err != nil {
		w.t.Fatalf("fake worker read payload: %v", err)
	}
	return h, p
}

func (w *linkPeer) send(t compat.MsgType, id uint64, payload []byte) {
	w.t.Helper()
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.conn.Write(compat.AppendFrame(nil, t, id, payload)); err != nil {
		w.t.Fatalf("fake worker write: %v", err)
	}
}

// next waits for the call's next frame.
func nextFrame(t *testing.T, c *Call) Frame {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if f, ok, _ := c.Next(); ok {
			return f
		}
		select {
		case <-c.Ready():
		case <-deadline:
			t.Fatal("no frame within 10 s")
		}
	}
}

func TestLinkInterleavesFragmentedAnswerWithOtherCalls(t *testing.T) {
	l, w, ev, _ := newTestLink(t)
	c1 := startAsync(t, l, []byte("req1"))
	h1, _ := w.read()
	c2 := startAsync(t, l, []byte("req2"))
	h2, _ := w.read()

	w.send(msgFrameBegin, h1.ID, begin(compat.MsgResponse, 6, "ab"))
	w.send(compat.MsgResponse, h2.ID, []byte("small"))
	// The other call's whole answer is delivered while call 1 is mid-frame.
	if f := nextFrame(t, c2()); string(f.Payload) != "small" || !f.Final() {
		t.Fatalf("call 2 got %+v", f)
	}
	w.send(msgFrameMore, h1.ID, []byte("cd"))
	w.send(msgFrameMore, h1.ID, []byte("ef"))
	call1 := c1()
	var got []byte
	for {
		f := nextFrame(t, call1)
		got = append(got, f.Payload...)
		l.Release(f)
		if f.Final() {
			break
		}
	}
	if string(got) != "abcdef" {
		t.Fatalf("call 1 payload %q", got)
	}
	waitFor(t, func() bool { return ev.done.Load() == 2 && l.Pending() == 0 }, "both calls done")
}

func TestLinkAcknowledgesConsumedBytes(t *testing.T) {
	l, w, _, _ := newTestLink(t)
	cf := startAsync(t, l, []byte("req"))
	h, _ := w.read()
	c := cf()
	go func() {
		l.Consumed(c, creditStep-1) // not yet due
		l.Consumed(c, 1)
	}()
	ch, p := w.read()
	if ch.Type != msgCredit || ch.ID != h.ID || len(p) != 8 || binary.BigEndian.Uint64(p) != creditStep {
		t.Fatalf("got %v %x, want a credit of %d for call %d", ch, p, creditStep, h.ID)
	}
	go l.Abandon(c)
	ch, p = w.read()
	if ch.Type != msgCredit || binary.BigEndian.Uint64(p) != unlimitedCredit {
		t.Fatalf("abandon sent %v %x, want unlimited credit", ch, p)
	}
}

func TestLinkCancelledCallMayEndMidFrame(t *testing.T) {
	l, w, ev, runErr := newTestLink(t)
	cf := startAsync(t, l, []byte("req"))
	h, _ := w.read()
	c := cf()
	w.send(msgFrameBegin, h.ID, begin(compat.MsgResponse, 100, "ab"))
	nextFrame(t, c)
	go l.Cancel(c)
	if ch, _ := w.read(); ch.Type != msgCancel {
		t.Fatalf("got %v, want cancel", ch)
	}
	w.send(compat.MsgEnd, h.ID, nil)
	waitFor(t, func() bool { return ev.done.Load() == 1 }, "the cancelled call to end")
	select {
	case err := <-runErr:
		t.Fatalf("link died: %v", err)
	default:
	}
}

func TestLinkProtocolViolationFailsPendingCalls(t *testing.T) {
	l, w, _, runErr := newTestLink(t)
	cf := startAsync(t, l, []byte("req"))
	h, _ := w.read()
	c := cf()
	w.send(msgFrameMore, h.ID, []byte("stray"))
	if f := nextFrame(t, c); f.Err == nil {
		t.Fatalf("got %+v, want the call failed", f)
	}
	select {
	case err := <-runErr:
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("run ended with %v, want a protocol error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("link still running")
	}
}

// startAsync starts a call (net.Pipe writes block until the fake worker
// reads) and returns a function yielding the call.
func startAsync(t *testing.T, l *Link, payload []byte) func() *Call {
	t.Helper()
	ch := make(chan *Call, 1)
	go func() {
		c, err := l.Start(payload)
		if err != nil {
			t.Errorf("start: %v", err)
		}
		ch <- c
	}()
	return func() *Call {
		select {
		case c := <-ch:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("start did not return")
			return nil
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLinkStreamsARequestInPieces(t *testing.T) {
	l, w, _, _ := newTestLink(t)
	cf := startStreamAsync(t, l, 10, []byte("abc"))
	h, p := w.read()
	if h.Type != msgReqBegin || binary.BigEndian.Uint32(p) != 10 || string(p[4:]) != "abc" {
		t.Fatalf("begin: %v %q", h, p)
	}
	c := cf()
	go func() {
		if err := l.SendMore(c, []byte("defghij")); err != nil {
			t.Errorf("send more: %v", err)
		}
	}()
	h2, p2 := w.read()
	if h2.Type != msgReqMore || h2.ID != h.ID || string(p2) != "defghij" {
		t.Fatalf("more: %v %q", h2, p2)
	}
	w.send(compat.MsgResponse, h.ID, []byte("ok"))
	if f := nextFrame(t, c); string(f.Payload) != "ok" || !f.Final() {
		t.Fatalf("answer %+v", f)
	}
}

func startStreamAsync(t *testing.T, l *Link, total int, first []byte) func() *Call {
	t.Helper()
	ch := make(chan *Call, 1)
	go func() {
		c, err := l.StartStream(total, first)
		if err != nil {
			t.Errorf("start stream: %v", err)
		}
		ch <- c
	}()
	return func() *Call {
		select {
		case c := <-ch:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("start stream did not return")
			return nil
		}
	}
}
