package arbiter

import (
	"context"
	"math"
	"net"
	"time"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
)

// The forwarding path has two seams, so that other transports (a remote
// node relaying a call) can reuse them:
//
//   - dispatch takes a client request's payload and starts it on a worker
//     link (routing, queueing, re-routing when a worker died unread);
//   - relayAnswer passes a call's answer frames, piece by piece, to an
//     answerSink under the client's request id.

// answerSink is where a call's answer goes: a client connection.
type answerSink interface {
	// writeBufs writes frame bytes (headers and payload pieces) in order.
	writeBufs(b net.Buffers) bool
	// writeError sends a complete error frame.
	writeError(e *compat.DirtyError, id uint64) bool
	// abort gives up on the connection: a frame was left half written, so
	// the byte stream cannot carry anything else.
	abort(reason string)
	// frameHeader puts an answer frame's header, in the client's protocol,
	// into dst (compat.HeaderSize bytes) and returns what to send.
	frameHeader(dst []byte, t compat.MsgType, length uint32, id uint64) []byte
}

// maxReroutes bounds how often one call is routed again after workers died
// without reading it.
const maxReroutes = 3

// outcomeReroute is relay's answer for a call to route again.
const outcomeReroute = "reroute"

// dispatch acquires a worker and starts the call on it, with the whole
// request payload, or (streamTotal >= 0) with the first piece of a request
// of streamTotal bytes whose other pieces follow through Link.SendMore. A
// worker that died between being picked and being written to never saw
// the call, so the call is routed again rather than failed.
func (c *clientConn) dispatch(app string, payload []byte, streamTotal int) (*worker.Process, *worker.Call, *compat.DirtyError) {
	timeout := c.s.cfg.Timeout
	for {
		w, ok, err := c.s.router.TryAcquire(app)
		if err == nil && !ok {
			w, err = c.acquireWaiting(app, timeout)
		}
		if err != nil {
			return nil, nil, errorFor(err, app, timeout)
		}
		var call *worker.Call
		if streamTotal >= 0 {
			call, err = w.Link().StartStream(streamTotal, payload)
		} else {
			call, err = w.Link().Start(payload)
		}
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

// relayAnswer forwards the worker's frames to out under the client's
// request id, payload bytes untouched, piece by piece as they come off the
// link (so memory per call stays bounded by the link's answer window). The
// worker's silence is bounded by dirty_timeout, as in gunicorn; on timeout
// the call is abandoned (its late answer is dropped by link id) and the
// client gets DirtyTimeoutError.
func (s *Server) relayAnswer(out answerSink, b *answerBatch, id uint64, w *worker.Process, call *worker.Call, mayReroute bool) string {
	link := w.Link()
	timeout := s.cfg.Timeout
	var expired <-chan time.Time
	// midFrame: a header went out whose payload is not complete yet; the
	// client's byte stream cannot take an error frame any more.
	midFrame := false
	for {
		f, ok, overflow := call.Next()
		if overflow {
			s.log.Warnf("Client fell %d MiB behind on a call; dropping it", worker.MaxQueuedBytes>>20)
			out.abort("client too slow")
			link.Cancel(call)
			return OutcomeClient
		}
		if !ok {
			// The timer is armed only once the answer is not ready at
			// once; the connection's one timer serves all its calls.
			if expired == nil && timeout > 0 {
				expired = b.arm(timeout)
				defer b.timer.Stop()
			}
			select {
			case <-call.Ready():
				continue
			case <-expired:
				return s.timedOut(out, id, w, call, timeout, midFrame)
			}
		}
		if f.Err != nil {
			if f.Retry && mayReroute && !midFrame {
				return outcomeReroute
			}
			if midFrame {
				out.abort("worker died mid-answer")
			} else {
				out.writeError(f.Err, id)
			}
			return OutcomeWorker
		}
		// Whatever else is already queued goes out in the same write:
		// fewer syscalls, and bigger reads for the client.
		b.add(out, f, id)
		for !f.Final() && b.room() {
			next, ok, _ := call.Next()
			if !ok || next.Err != nil {
				if ok {
					call.Unget(next)
				}
				break
			}
			f = next
			b.add(out, f, id)
		}
		final, outcome := f.Final(), ""
		if final {
			outcome = finalOutcome(f.Type, f.Payload)
		}
		midFrame = f.More
		written := out.writeBufs(b.bufs)
		n := b.release(link)
		if !written {
			if !final {
				link.Cancel(call)
			}
			return OutcomeClient
		}
		link.Consumed(call, n)
		if final {
			return outcome
		}
		if expired != nil {
			b.timer.Reset(timeout)
		}
	}
}

// answerBatch collects answer frames and pieces for one write. It lives
// as long as its connection, and carries the connection's timeout timer.
type answerBatch struct {
	timer  *time.Timer
	bufs   net.Buffers
	frames []worker.Frame
	hdrs   [maxBatch][compat.HeaderSize]byte
	nhdr   int
	bytes  int
	cost   int
}

const (
	maxBatch      = 32
	maxBatchBytes = 4 << 20
)

// arm starts the timer (made on first use) for d.
func (b *answerBatch) arm(d time.Duration) <-chan time.Time {
	if b.timer == nil {
		b.timer = time.NewTimer(d)
	} else {
		b.timer.Reset(d)
	}
	return b.timer.C
}

func (b *answerBatch) room() bool { return len(b.frames) < maxBatch && b.bytes < maxBatchBytes }

func (b *answerBatch) add(out answerSink, f worker.Frame, id uint64) {
	if !f.Cont {
		h := &b.hdrs[b.nhdr]
		b.nhdr++
		b.bufs = append(b.bufs, out.frameHeader(h[:], f.Type, f.Total, id))
	}
	if len(f.Payload) > 0 {
		b.bufs = append(b.bufs, f.Payload)
	}
	b.frames = append(b.frames, f)
	b.bytes += len(f.Payload)
	b.cost += len(f.Payload) + worker.FrameCost
}

// release hands the batch's buffers back to the link and returns what it
// counted against the call's window (payload plus worker.FrameCost per frame).
func (b *answerBatch) release(link *worker.Link) int {
	n := b.cost
	for i := range b.frames {
		link.Release(b.frames[i])
		b.frames[i] = worker.Frame{}
	}
	for i := range b.bufs {
		b.bufs[i] = nil
	}
	b.frames, b.bufs, b.nhdr, b.bytes, b.cost = b.frames[:0], b.bufs[:0], 0, 0, 0
	return n
}

// timedOut abandons a call whose worker stayed silent for dirty_timeout:
// its late answer is dropped by link id, the worker is replaced (it still
// runs the call in a thread nothing can cancel, so no later call may be
// routed to it) and the client gets gunicorn's DirtyTimeoutError (or, if
// part of a frame already went out, a closed connection).
func (s *Server) timedOut(out answerSink, id uint64, w *worker.Process, call *worker.Call, timeout time.Duration, midFrame bool) string {
	w.Link().Abandon(call)
	s.log.Warnf("Dirty call timed out after %s on worker %d", timeout, w.PID)
	if s.pool != nil {
		s.pool.Recycle(w, "a call exceeded dirty_timeout")
	}
	if midFrame {
		out.abort("dirty_timeout mid-answer")
	} else {
		out.writeError(compat.ErrTimeout("Worker timeout", int64(math.Round(timeout.Seconds()))), id)
	}
	return OutcomeTimeout
}
