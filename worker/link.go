package worker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gdirty/gdirty/compat"
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

// Frame is one answer frame for a call: a RESPONSE, ERROR, CHUNK or END
// written by the worker, or an error gdirty synthesised (Err set) because
// the worker died.
type Frame struct {
	Type    compat.MsgType
	Payload []byte
	Err     *compat.DirtyError
	// Retry: the worker died without having read the request, so it never
	// ran; the caller routes it again (Err is set too, for a last attempt).
	Retry bool
	// pooled: Payload came from the link's buffer pool; Release returns it.
	pooled bool
}

// Final reports whether the frame ends its call.
func (f Frame) Final() bool {
	return f.Err != nil || f.Type == compat.MsgResponse || f.Type == compat.MsgError || f.Type == compat.MsgEnd
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

// Link multiplexes calls over the socket to one worker process. Each call
// gets a link id; the worker answers with that id, so calls may interleave
// (up to dirty_threads at once) and a late answer to an abandoned call is
// recognised and dropped.
type Link struct {
	conn   net.Conn
	events LinkEvents
	pid    int

	wmu sync.Mutex // serialises frame writes

	bufs bufPool   // large answer payloads, recycled by Release
	mark *readMark // last request the worker read (nil: unknown)

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*Call
	closed  bool
}

func newLink(conn net.Conn, pid int, events LinkEvents) *Link {
	return &Link{conn: conn, events: events, pid: pid, pending: map[uint64]*Call{}}
}

// Start sends a REQUEST with the client's original payload and returns
// the call whose Frames carry the answer.
func (l *Link) Start(payload []byte) (*Call, error) {
	c := newCall()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrLinkClosed
	}
	l.nextID++
	c.id = l.nextID
	l.pending[c.id] = c
	l.mu.Unlock()

	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: compat.MsgRequest, Length: uint32(len(payload)), ID: c.id})
	bufs := net.Buffers{hdr[:], payload}
	l.wmu.Lock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
	_, err := bufs.WriteTo(l.conn)
	l.wmu.Unlock()
	if err != nil {
		_ = l.conn.Close()
		// The worker never got the whole request, so it cannot have run
		// it: unless the reader already failed the call, hand it back to
		// be routed to another worker.
		l.mu.Lock()
		_, mine := l.pending[c.id]
		delete(l.pending, c.id)
		l.mu.Unlock()
		if mine {
			return nil, fmt.Errorf("%w: %v", ErrLinkClosed, err)
		}
	}
	return c, nil
}

// Abandon tells the link the caller no longer listens to c. The worker is
// still busy with it until its final frame arrives.
func (l *Link) Abandon(c *Call) { c.abandon() }

// Cancel abandons c and asks the worker to stop producing it: a streaming
// generator is closed at its next chunk (as gunicorn closes it when its
// client disconnects), so no thread keeps working for nobody. The worker
// still ends the call, which frees its slot.
func (l *Link) Cancel(c *Call) {
	c.abandon()
	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: msgCancel, ID: c.id})
	l.wmu.Lock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
	_, err := l.conn.Write(hdr[:])
	l.wmu.Unlock()
	if err != nil {
		_ = l.conn.Close()
	}
}

// Release gives a delivered frame's payload buffer back for reuse, once
// the caller has written it out and no longer touches it.
func (l *Link) Release(f Frame) {
	if f.pooled {
		l.bufs.put(f.Payload)
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
	r := bufio.NewReaderSize(l.conn, 64*1024)
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
		case compat.MsgResponse, compat.MsgError, compat.MsgChunk, compat.MsgEnd:
			l.deliver(h.ID, Frame{Type: h.Type, Payload: payload, pooled: len(payload) >= largePayload})
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

func (l *Link) deliver(id uint64, f Frame) {
	l.mu.Lock()
	c := l.pending[id]
	final := f.Final()
	if c != nil && final {
		delete(l.pending, id)
	}
	l.mu.Unlock()
	if c == nil {
		return // answer to a call already failed; never reaches anyone
	}
	l.send(c, f)
	if final {
		l.events.CallDone()
	}
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
	var payload []byte
	if h.Length >= largePayload {
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
