package arbiter

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/internal/rawio"
)

// clientConn serves one gunicorn client connection. Calls on a connection
// run one after another, as gunicorn's arbiter runs them: clients match
// answers by order, so answers leave in the order requests arrived.
type clientConn struct {
	s    *Server
	conn net.Conn
	// format renders answers for a connection that speaks another
	// protocol than v1 (conn_v0.go); nil for v1.
	format answerFormat
	raw    *rawio.Conn // nil when conn has no fd

	mu   sync.Mutex
	busy bool
	// broken is set when a write to the client failed; the connection is
	// closed after the current call.
	broken bool
	// fromCluster marks a connection carrying another node's calls.
	fromCluster bool

	// batch is reused by every call's answer relay (calls on a
	// connection run one at a time).
	batch answerBatch
}

// readBufferSize is each connection's read buffer: requests are small as
// a rule, larger payloads are read straight into their own buffer (or
// forwarded in pieces), and an idle connection should cost little.
const readBufferSize = 16 << 10

// keptPayloadBuf bounds the payload buffer a connection keeps between
// requests.
const keptPayloadBuf = 256 << 10

func (c *clientConn) serve() {
	defer c.conn.Close()
	var src io.Reader = c.conn
	if raw, ok := rawio.New(c.conn); ok {
		c.raw, src = raw, raw
	}
	r := bufio.NewReaderSize(src, readBufferSize)
	// The protocol is chosen once, from the first byte: a v1 frame starts
	// with the magic "GD"; a v0 length prefix (at most 64 MiB) never
	// starts with 'G'.
	if first, err := r.Peek(1); err == nil && first[0] != 'G' {
		c.serveV0(r)
		return
	}
	var buf []byte
	for {
		h, err := compat.ReadHeader(r)
		if err != nil {
			c.readFailed(h, err)
			return
		}
		if h.Type == compat.MsgRequest && h.Length > streamMin {
			// A large request is forwarded while it arrives.
			if !c.setBusy(true) {
				return
			}
			ok := c.handleStreamed(r, h)
			if !ok || !c.setBusy(false) || c.isBroken() {
				return
			}
			continue
		}
		payload, err := compat.ReadPayload(r, h, buf)
		if err != nil {
			c.readFailed(h, err)
			return
		}
		if cap(payload) > cap(buf) && cap(payload) <= keptPayloadBuf {
			buf = payload[:0] // keep modest buffers for the next frame
		}
		if !c.setBusy(true) {
			return
		}
		c.handle(h, payload)
		if !c.setBusy(false) || c.isBroken() {
			return
		}
		if r.Buffered() == 0 && c.s.inCall.Load() > 0 {
			// Let the other connections' goroutines go first: by the
			// time this one reads again, its client (another process)
			// has often sent its next request, and the read finds it
			// instead of failing with EAGAIN and parking on the poller.
			// (With no other call in progress there is nobody to let go.)
			runtime.Gosched()
		}
	}
}

// readFailed answers a frame that cannot be used. Once the header is bad
// the byte stream cannot be resynchronised, so the connection closes; when
// the header named a request id the client first gets a
// DirtyProtocolError for it.
func (c *clientConn) readFailed(h compat.Header, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return
	}
	if compat.IsKind(err, compat.KindUnknownMessageType) || compat.IsKind(err, compat.KindMessageTooLarge) {
		c.write(compat.ErrProtocol(err).Frame(h.ID))
	}
	c.s.log.Warnf("Closing client connection: %v", err)
}

func (c *clientConn) handle(h compat.Header, payload []byte) {
	switch h.Type {
	case compat.MsgRequest:
		c.handleRequest(h.ID, payload)
	case compat.MsgStatus:
		if len(payload) > 0 {
			if err := compat.Validate(payload); err != nil {
				c.write(compat.ErrProtocol(err).Frame(h.ID))
				return
			}
		}
		c.writeResult(h.ID, c.s.status())
	case compat.MsgStash:
		c.serveLocal(h, payload, c.s.cfg.Stash)
	case compat.MsgManage:
		c.serveLocal(h, payload, c.s.cfg.Manage)
	default:
		c.write(compat.ErrProtocol(&compat.ProtocolError{
			Kind:    compat.KindUnknownMessageType,
			Message: "Unexpected message type from client: " + h.Type.String(),
		}).Frame(h.ID))
	}
}

// emptyDict is the TLV encoding of {}.
var emptyDict = []byte{compat.TypeDict, 0, 0, 0, 0}

// serveLocal answers a message the arbiter handles itself.
func (c *clientConn) serveLocal(h compat.Header, payload []byte, svc Service) {
	// An empty payload is an empty dict to gunicorn ({}).
	if len(payload) == 0 {
		payload = emptyDict
	}
	if err := compat.Validate(payload); err != nil {
		c.write(compat.ErrProtocol(err).Frame(h.ID))
		return
	}
	if svc == nil {
		c.write(compat.ErrGeneric("gdirty does not support %s messages", h.Type).Frame(h.ID))
		return
	}
	resp, derr := svc.Handle(payload)
	if derr != nil {
		c.write(derr.Frame(h.ID))
		return
	}
	c.writeFrame(compat.MsgResponse, h.ID, resp)
}

func (c *clientConn) handleRequest(id uint64, payload []byte) {
	c.serveRequest(id, payload, c.s.metrics.CallStarted())
}

// serveRequest scans, routes and relays a whole request.
func (c *clientConn) serveRequest(id uint64, payload []byte, started time.Time) {
	c.s.calls.Add(1)
	route, err := compat.ScanRequest(payload)
	if err != nil {
		c.write(compat.ErrProtocol(err).Frame(id))
		c.s.metrics.CallFinished(route.AppPath, route.Action, OutcomeProtocol, started)
		return
	}
	c.call(id, route, payload, started)
}

// call routes a validated request to a worker and relays its answers; it
// serves both protocols (answers are written through writeFrame and
// writeError).
func (c *clientConn) call(id uint64, route compat.RequestRoute, payload []byte, started time.Time) {
	app := route.AppPath
	switch {
	case route.AnyWorker():
		app = "" // the router's "any worker"
	case !route.AppIsString:
		c.writeError(compat.ErrNoWorkersForAppValue(route.AppValue), id)
		c.s.metrics.CallFinished("", route.Action, OutcomeNoWorkers, started)
		return
	}
	if r := c.remoteFor(app); r != nil {
		outcome := r.Call(app, id, payload, clientWriter{c})
		c.s.metrics.CallFinished(route.AppPath, route.Action, outcome, started)
		return
	}
	if outcome, ok := c.spill(app, id, payload); ok {
		c.s.metrics.CallFinished(route.AppPath, route.Action, outcome, started)
		return
	}
	var outcome string
	for attempt := 0; ; attempt++ {
		w, call, derr := c.dispatch(app, payload, -1)
		if derr != nil {
			c.writeError(derr, id)
			outcome = OutcomeNoWorkers
			if derr.Type == "DirtyTimeoutError" {
				outcome = OutcomeTimeout
			}
			break
		}
		// A worker that died before reading the request never ran it: the
		// call is routed again (a few times at most) instead of failing.
		outcome = c.s.relayAnswer(c, &c.batch, id, w, call, attempt < maxReroutes)
		if outcome != outcomeReroute {
			break
		}
	}
	c.s.metrics.CallFinished(route.AppPath, route.Action, outcome, started)
}

// finalOutcome classifies a call's last frame (for metrics only: the
// frame itself is forwarded untouched).
func finalOutcome(t compat.MsgType, payload []byte) string {
	if t != compat.MsgError {
		return OutcomeOK
	}
	if compat.ErrorType(payload) == "DirtyAppError" {
		return OutcomeAppError
	}
	return OutcomeError
}

func (c *clientConn) writeResult(id uint64, result any) {
	payload, err := compat.ResponsePayload(result)
	if err != nil {
		c.write(compat.ErrGeneric("encode result: %v", err).Frame(id))
		return
	}
	c.writeFrame(compat.MsgResponse, id, payload)
}

// writeFrame sends header and payload with one writev, no copy.
func (c *clientConn) writeFrame(t compat.MsgType, id uint64, payload []byte) bool {
	var hdr [compat.HeaderSize]byte
	return c.writeBufs(net.Buffers{c.frameHeader(hdr[:], t, uint32(len(payload)), id), payload})
}

// frameHeader puts the header of an answer frame in the connection's
// protocol into dst (compat.HeaderSize bytes) and returns what to send.
func (c *clientConn) frameHeader(dst []byte, t compat.MsgType, length uint32, id uint64) []byte {
	if c.format != nil {
		return c.format.header(dst, t, length, id)
	}
	compat.PutHeader(dst, compat.Header{Type: t, Length: length, ID: id})
	return dst[:compat.HeaderSize]
}

// abort ends the connection after the current call: its byte stream holds
// half a frame.
func (c *clientConn) abort(reason string) {
	c.s.log.Warnf("Closing client connection: %s", reason)
	c.markBroken()
}

func (c *clientConn) write(frame []byte) bool { return c.writeBufs(net.Buffers{frame}) }

// writeError sends an error the arbiter synthesised for request id.
func (c *clientConn) writeError(e *compat.DirtyError, id uint64) bool {
	if c.format != nil {
		return c.write(c.format.errorFrame(e, id))
	}
	return c.write(e.Frame(id))
}

func (c *clientConn) writeBufs(b net.Buffers) bool {
	if c.isBroken() {
		return false
	}
	var err error
	if c.raw != nil {
		// The write deadline is armed only if the client's socket is full.
		_, err = c.raw.Writev(b, c.s.cfg.WriteTimeout)
	} else {
		_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		_, err = b.WriteTo(c.conn)
	}
	if err != nil {
		c.markBroken()
		c.s.log.Debugf("Client write failed: %v", err)
		return false
	}
	return true
}

func (c *clientConn) markBroken() {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
}

func (c *clientConn) isBroken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// setBusy flips the busy flag; it returns false when the server is
// closing and the connection should end.
func (c *clientConn) setBusy(b bool) bool {
	c.mu.Lock()
	if b != c.busy {
		if b {
			c.s.inCall.Add(1)
		} else {
			c.s.inCall.Add(-1)
		}
	}
	c.busy = b
	c.mu.Unlock()
	return !c.s.isClosing()
}

// wakeIfIdle ends a connection blocked waiting for its next request.
func (c *clientConn) wakeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		_ = c.conn.SetReadDeadline(time.Now())
	}
}
