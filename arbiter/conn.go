package arbiter

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
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

	mu   sync.Mutex
	busy bool
	// broken is set when a write to the client failed; the connection is
	// closed after the current call.
	broken bool
	// fromCluster marks a connection carrying another node's calls.
	fromCluster bool
}

const readBufferSize = 64 * 1024

func (c *clientConn) serve() {
	defer c.conn.Close()
	r := bufio.NewReaderSize(c.conn, readBufferSize)
	// The protocol is chosen once, from the first byte: a v1 frame starts
	// with the magic "GD"; a v0 length prefix (at most 64 MiB) never
	// starts with 'G'.
	if first, err := r.Peek(1); err == nil && first[0] != 'G' {
		c.serveV0(r)
		return
	}
	var buf []byte
	for {
		h, payload, err := compat.ReadFrame(r, buf)
		if err != nil {
			c.readFailed(h, err)
			return
		}
		if cap(payload) > cap(buf) && cap(payload) <= 4*readBufferSize {
			buf = payload[:0] // keep modest buffers for the next frame
		}
		if !c.setBusy(true) {
			return
		}
		c.handle(h, payload)
		if !c.setBusy(false) || c.isBroken() {
			return
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
	started := c.s.metrics.CallStarted()
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
		w, call, derr := c.dispatch(app, payload)
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
		outcome = c.relay(id, w, call, attempt < maxReroutes)
		if outcome != outcomeReroute {
			break
		}
	}
	c.s.metrics.CallFinished(route.AppPath, route.Action, outcome, started)
}

// maxReroutes bounds how often one call is routed again after workers died
// without reading it.
const maxReroutes = 3

// outcomeReroute is relay's answer for a call to route again.
const outcomeReroute = "reroute"

// dispatch acquires a worker and starts the call on it. A worker that died
// between being picked and being written to never saw the call, so the
// call is routed again rather than failed.
func (c *clientConn) dispatch(app string, payload []byte) (*worker.Process, *worker.Call, *compat.DirtyError) {
	timeout := c.s.cfg.Timeout
	for {
		w, ok, err := c.s.router.TryAcquire(app)
		if err == nil && !ok {
			w, err = c.acquireWaiting(app, timeout)
		}
		if err != nil {
			return nil, nil, errorFor(err, app, timeout)
		}
		call, err := w.Link().Start(payload)
		if err == nil {
			return w, call, nil
		}
		c.s.router.Release(w)
		c.s.router.Remove(w)
	}
}

// acquireWaiting queues for a worker, bounded by dirty_timeout.
func (c *clientConn) acquireWaiting(app string, timeout time.Duration) (*worker.Process, error) {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	return c.s.router.Acquire(ctx, app)
}

// relay forwards the worker's frames to the client under the client's
// request id, payload bytes untouched. The worker's silence is bounded by
// dirty_timeout per frame, as in gunicorn; on timeout the call is abandoned
// (its late answer is dropped by link id) and the client gets
// DirtyTimeoutError.
func (c *clientConn) relay(id uint64, w *worker.Process, call *worker.Call, mayReroute bool) string {
	timeout := c.s.cfg.Timeout
	var timer *time.Timer
	var expired <-chan time.Time
	if timeout > 0 {
		timer = time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	for {
		f, ok, overflow := call.Next()
		if overflow {
			c.s.log.Warnf("Client fell %d MiB behind on a call; dropping it", worker.MaxQueuedBytes>>20)
			c.markBroken()
			w.Link().Cancel(call)
			return OutcomeClient
		}
		if !ok {
			select {
			case <-call.Ready():
				continue
			case <-expired:
				return c.timedOut(id, w, call, timeout)
			}
		}
		if f.Err != nil {
			if f.Retry && mayReroute {
				return outcomeReroute
			}
			c.writeError(f.Err, id)
			return OutcomeWorker
		}
		final, outcome := f.Final(), ""
		if final {
			outcome = finalOutcome(f.Type, f.Payload)
		}
		written := c.writeFrame(f.Type, id, f.Payload)
		w.Link().Release(f) // f.Payload must not be used after this
		if !written {
			if !final {
				w.Link().Cancel(call)
			}
			return OutcomeClient
		}
		if final {
			return outcome
		}
		if timer != nil {
			timer.Reset(timeout)
		}
	}
}

// timedOut abandons a call whose worker stayed silent for dirty_timeout:
// its late answer is dropped by link id, the worker is replaced (it still
// runs the call in a thread nothing can cancel, so no later call may be
// routed to it) and the client gets gunicorn's DirtyTimeoutError.
func (c *clientConn) timedOut(id uint64, w *worker.Process, call *worker.Call, timeout time.Duration) string {
	w.Link().Abandon(call)
	c.s.log.Warnf("Dirty call timed out after %s on worker %d", timeout, w.PID)
	if c.s.pool != nil {
		c.s.pool.Recycle(w, "a call exceeded dirty_timeout")
	}
	c.writeError(compat.ErrTimeout("Worker timeout", int64(math.Round(timeout.Seconds()))), id)
	return OutcomeTimeout
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
	if c.format != nil {
		return c.writeBufs(c.format.answer(t, id, payload))
	}
	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: t, Length: uint32(len(payload)), ID: id})
	return c.writeBufs(net.Buffers{hdr[:], payload})
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
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if _, err := b.WriteTo(c.conn); err != nil {
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
