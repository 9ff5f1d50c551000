package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/internal/rawio"
)

// Link-only message types (worker -> gdirty). They live above gunicorn's
// range so they can never be confused with a client message.
const (
	msgReady     compat.MsgType = 0x40
	msgHeartbeat compat.MsgType = 0x41
	// msgCancel (gdirty -> worker): the caller of this link id is gone;
	// stop producing its stream and end it.
	msgCancel compat.MsgType = 0x42
)

// Frame is one answer frame for a call — a RESPONSE, ERROR, CHUNK or END
// written by the worker, or one piece of it — or an error gdirty
// synthesised (Err set) because the worker died.
//
// A large frame arrives in pieces: the first (Cont false) carries the
// frame's Total payload length, so its header can be written at once; the
// next ones (Cont true) carry only payload; More is set on all but the last.
type Frame struct {
	Type    compat.MsgType
	Payload []byte
	// Total is the whole frame's payload length (first piece only).
	Total uint32
	// Cont: a continuation piece (no header to write).
	Cont bool
	// More: further pieces of this frame follow.
	More bool
	Err  *compat.DirtyError
	// Retry: the worker died without having read the request, so it never
	// ran; the caller routes it again (Err is set too, for a last attempt).
	Retry bool
	// buf is the link's pool buffer Payload lives in; Release returns it.
	buf []byte
}

// Final reports whether the frame ends its call.
func (f Frame) Final() bool {
	if f.Err != nil {
		return true
	}
	return !f.More && (f.Type == compat.MsgResponse || f.Type == compat.MsgError || f.Type == compat.MsgEnd)
}

// linkWriteTimeout bounds one write to a worker: a worker that stops
// reading its link is treated as dead rather than blocking its callers.
const linkWriteTimeout = 30 * time.Second

// ErrLinkClosed is returned when a call is started on a dead link.
var ErrLinkClosed = errors.New("worker link closed")

// LinkEvents receives what a link learns besides call answers.
type LinkEvents interface {
	Ready(pid int, apps []string)
	Heartbeat()
	// CallDone is called once per call when its final frame has arrived or
	// the link died, including calls the caller abandoned: only then is the
	// worker really free of it.
	CallDone()
}

// Link multiplexes calls over the pipes to one worker process. Each call
// gets a link id; the worker answers with that id, so calls may interleave
// (up to dirty_threads at once) and a late answer to an abandoned call is
// recognised and dropped.
type Link struct {
	conn   net.Conn
	raw    *rawio.Conn // nil: conn has no fd (tests)
	events LinkEvents
	pid    int

	out *linkWriter // serialises and batches frame writes

	bufs bufPool   // large answer payloads, recycled by Release
	mark *readMark // last request the worker read (nil: unknown)

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*Call
	closed  bool
}

func newLink(conn net.Conn, pid int, events LinkEvents) *Link {
	l := &Link{conn: conn, events: events, pid: pid, pending: map[uint64]*Call{}}
	if split, ok := conn.(rawio.SplitConn); ok {
		l.raw, _ = rawio.NewSplit(split)
	} else {
		l.raw, _ = rawio.New(conn)
	}
	l.out = newLinkWriter(l.writeBufs)
	return l
}

// reader is what the link reads from: raw reads when the conn has an fd.
func (l *Link) reader() io.Reader {
	if l.raw != nil {
		return l.raw
	}
	return l.conn
}

// writeBufs writes bufs to the worker (called by l.out only). The write
// deadline is armed only if the worker's socket is full.
func (l *Link) writeBufs(bufs [][]byte) error {
	if l.raw != nil {
		_, err := l.raw.Writev(bufs, linkWriteTimeout)
		return err
	}
	_ = l.conn.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(l.conn)
	return err
}

// Start sends a REQUEST with the client's original payload and returns
// the call whose Frames carry the answer.
func (l *Link) Start(payload []byte) (*Call, error) {
	c, err := l.register()
	if err != nil {
		return nil, err
	}
	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: compat.MsgRequest, Length: uint32(len(payload)), ID: c.id})
	if err := l.out.send(true, hdr[:], payload); err != nil {
		return l.unsent(c, err)
	}
	return c, nil
}

// register gives a new call its link id.
func (l *Link) register() (*Call, error) {
	c := newCall()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrLinkClosed
	}
	l.nextID++
	c.id = l.nextID
	l.pending[c.id] = c
	return c, nil
}

// unsent handles a call whose request could not be written: the worker
// never got the whole request, so it cannot have run it. Unless the
// reader already failed the call, it is handed back to be routed to
// another worker.
func (l *Link) unsent(c *Call, err error) (*Call, error) {
	_ = l.conn.Close()
	l.mu.Lock()
	_, mine := l.pending[c.id]
	delete(l.pending, c.id)
	l.mu.Unlock()
	if mine {
		return nil, fmt.Errorf("%w: %v", ErrLinkClosed, err)
	}
	return c, nil // its failure is already queued
}

// Abandon tells the link the caller no longer listens to c. The worker is
// still busy with it until its final frame arrives; its answer window is
// lifted so it never waits for acknowledgements nobody will send.
func (l *Link) Abandon(c *Call) {
	l.drop(c)
	l.writeCredit(c.id, unlimitedCredit)
}

// drop abandons c and recycles the buffers it still held.
func (l *Link) drop(c *Call) {
	for _, f := range c.abandon() {
		l.Release(f)
	}
}

// Consumed tells the link the caller passed n of c's answer on to its
// client, counted as the worker counts it (payload plus FrameCost per frame
// or piece); the worker gets an acknowledgement each creditStep, which is
// what lets it send more of a large answer.
func (l *Link) Consumed(c *Call, n int) {
	if total, due := c.consumed(n); due {
		l.writeCredit(c.id, total)
	}
}

func (l *Link) writeCredit(id uint64, total uint64) {
	var b [compat.HeaderSize + 8]byte
	compat.PutHeader(b[:], compat.Header{Type: msgCredit, Length: 8, ID: id})
	binary.BigEndian.PutUint64(b[compat.HeaderSize:], total)
	l.writeCtl(b[:])
}

// writeCtl sends a small control frame; a failed write closes the link
// (its reader then fails the pending calls).
func (l *Link) writeCtl(b []byte) {
	err := l.out.send(false, b)
	if err != nil {
		_ = l.conn.Close()
	}
}

// Cancel abandons c and asks the worker to stop producing it: a streaming
// generator is closed at its next chunk (as gunicorn closes it when its
// client disconnects), so no thread keeps working for nobody. The worker
// still ends the call, which frees its slot.
func (l *Link) Cancel(c *Call) {
	l.drop(c)
	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: msgCancel, ID: c.id})
	l.writeCtl(hdr[:])
}

// Release gives a delivered frame's payload buffer back for reuse, once
// the caller has written it out and no longer touches it.
func (l *Link) Release(f Frame) {
	if f.buf != nil {
		l.bufs.put(f.buf)
	}
}

// Close closes the link; the worker exits when it sees EOF.
func (l *Link) Close() error { return l.conn.Close() }

// Pending returns how many calls the worker still holds.
func (l *Link) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// run reads frames until the link breaks, then fails every pending call
// with err(cause). It returns the read error (io.EOF on a clean close).
func (l *Link) run(deathErr func(error) *compat.DirtyError) error {
	// Buffered: a small answer's header and payload arrive in one read.
	r := bufio.NewReaderSize(l.reader(), 64*1024)
	var readErr error
	for {
		h, payload, err := readLinkFrame(r, &l.bufs)
		if err != nil {
			readErr = err
			break
		}
		switch h.Type {
		case msgReady:
			pid, apps, err := parseReady(payload)
			if err != nil {
				readErr = err
				break
			}
			l.events.Ready(pid, apps)
			continue
		case msgHeartbeat:
			l.events.Heartbeat()
			continue
		case compat.MsgResponse, compat.MsgError, compat.MsgChunk, compat.MsgEnd, msgFrameBegin, msgFrameMore:
			if err := l.deliver(h, payload); err != nil {
				readErr = fmt.Errorf("worker %d: %w", l.pid, err)
				break
			}
			continue
		default:
			readErr = fmt.Errorf("worker %d sent unexpected message type 0x%02x", l.pid, uint8(h.Type))
		}
		break
	}
	l.mu.Lock()
	l.closed = true
	calls := l.pending
	l.pending = map[uint64]*Call{}
	l.mu.Unlock()
	_ = l.conn.Close()
	derr := deathErr(readErr)
	lastRead := l.mark.lastRead()
	for _, c := range calls {
		l.send(c, Frame{Err: derr, Retry: l.mark != nil && c.id > lastRead})
		l.events.CallDone()
	}
	return readErr
}

// deliver queues an answer frame (or piece) for its call. An error means
// the worker broke the link protocol.
func (l *Link) deliver(h compat.Header, payload []byte) error {
	var buf []byte
	if pooled(len(payload)) {
		buf = payload
	}
	l.mu.Lock()
	c := l.pending[h.ID]
	l.mu.Unlock()
	if c == nil {
		// An answer to a call already failed; never reaches anyone.
		l.bufs.put(buf)
		return nil
	}
	if c.part.left > 0 && h.Type != msgFrameMore && c.isGone() {
		// The worker ends a cancelled call without finishing its frame.
		c.part.abort()
	}
	f, err := c.part.next(h.Type, payload)
	if err != nil {
		l.bufs.put(buf)
		return fmt.Errorf("call %d: %w", h.ID, err)
	}
	f.buf = buf
	final := f.Final()
	if final {
		l.mu.Lock()
		delete(l.pending, h.ID)
		l.mu.Unlock()
	}
	if !c.push(f) {
		l.bufs.put(buf)
	}
	if final {
		l.events.CallDone()
	}
	return nil
}

func (l *Link) send(c *Call, f Frame) { c.push(f) }

// readLinkFrame reads a frame, accepting gunicorn's answer types and the
// link's own ones.
func readLinkFrame(r io.Reader, bufs *bufPool) (compat.Header, []byte, error) {
	var hb [compat.HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return compat.Header{}, nil, err
	}
	magicOK, versionOK, h := compat.RawHeader(hb[:])
	if !magicOK || !versionOK || h.Length > compat.MaxMessageSize {
		return h, nil, fmt.Errorf("malformed frame header from worker: % x", hb)
	}
	if (h.Type == msgFrameBegin || h.Type == msgFrameMore) && h.Length > maxPiece+beginPrefix {
		return h, nil, fmt.Errorf("fragment of %d bytes from worker (max: %d)", h.Length, maxPiece+beginPrefix)
	}
	var payload []byte
	if pooled(int(h.Length)) {
		payload = bufs.get(int(h.Length))
	} else {
		payload = make([]byte, h.Length)
	}
	if _, err := io.ReadFull(r, payload); err != nil {
		return h, nil, err
	}
	return h, payload, nil
}

func parseReady(payload []byte) (int, []string, error) {
	v, err := compat.Decode(payload)
	if err != nil {
		return 0, nil, fmt.Errorf("bad READY from worker: %w", err)
	}
	d, ok := v.(*compat.Dict)
	if !ok {
		return 0, nil, fmt.Errorf("bad READY from worker: not a dict")
	}
	pidV, _ := d.Get("pid")
	pid, _ := pidV.(int64)
	appsV, _ := d.Get("apps")
	list, _ := appsV.([]any)
	apps := make([]string, 0, len(list))
	for _, a := range list {
		if s, ok := a.(string); ok {
			apps = append(apps, s)
		}
	}
	return int(pid), apps, nil
}
