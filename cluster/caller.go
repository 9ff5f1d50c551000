package cluster

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/compat"
)

// The calling side: a call for an app the local pool does not host is
// published on the app's call subject; one node of the app's queue group
// picks it up and streams the answer frames back, which are written to
// the client under its own request id, payload bytes untouched.

// pickupAttempts is how often a call nobody picked up is published again:
// a node that took it off the wire but never acknowledged it (stopped,
// dying) did not start it, so another node may get it.
const pickupAttempts = 3

var (
	_ arbiter.RemoteCaller = (*Node)(nil)
	_ arbiter.Spiller      = (*Node)(nil)
)

// Call runs one REQUEST on a node that hosts app and writes its answer
// frames to the client with write; it returns the call's outcome.
func (n *Node) Call(app string, id uint64, payload []byte, w arbiter.ClientWriter) string {
	started := time.Now()
	c := &remoteCall{n: n, app: app, id: id, w: w}
	outcome := c.run(payload)
	n.metrics.observe(c.node, outcome, time.Since(started))
	return outcome
}

// Spill offers a call the local pool is too busy for to the other nodes
// that announced the app, one at a time in random order, each on its own
// subject (never back to this node); a node takes it only if it has a
// free worker for the app. ok is false (nothing written) when none did.
func (n *Node) Spill(app string, id uint64, payload []byte, w arbiter.ClientWriter) (string, bool) {
	if !n.opts.Spill || !n.nc.IsConnected() {
		return "", false
	}
	for _, node := range n.othersHosting(app) {
		started := time.Now()
		c := &remoteCall{n: n, app: app, id: id, w: w, spill: true, subject: n.subj.direct(node, app)}
		outcome := c.run(payload)
		if outcome == outcomeDeclined {
			continue
		}
		n.metrics.observe(c.node, outcome, time.Since(started))
		return outcome, true
	}
	return "", false
}

// Pick-up results that are not outcomes of the call: a node declined it
// (spilled, or the node is stopping), or nobody subscribes to the subject.
const (
	outcomeDeclined     = "declined"
	outcomeNoResponders = "no_responders"
)

type remoteCall struct {
	n   *Node
	app string
	id  uint64
	w   arbiter.ClientWriter
	// inFrame: a frame is half written to the client; the call can then
	// only end by closing the client connection.
	inFrame bool

	spill   bool   // offered to a node with a free worker only (--spill)
	subject string // where the call is published (default: the app's queue group)

	node string // name of the node that picked the call up
	pid  int
	ctl  string // its control subject for this call
}

// fail answers the call with an error, or closes the client connection
// when a frame was left half written (no frame could follow it).
func (c *remoteCall) fail(e *compat.DirtyError) bool {
	if c.inFrame {
		c.w.Abort()
		return false
	}
	return c.w.Write(net.Buffers{e.Frame(c.id)})
}

func (c *remoteCall) noWorkers(why string) string {
	e := compat.ErrNoWorkersForApp(c.app)
	if c.app == "" {
		e = compat.ErrNoWorkers()
	}
	if why != "" {
		e.Message += " (" + why + ")"
	}
	c.fail(e)
	return arbiter.OutcomeNoWorkers
}

func (c *remoteCall) run(payload []byte) string {
	n := c.n
	if !n.nc.IsConnected() {
		return c.noWorkers("cluster unreachable")
	}
	ps := partSize(n.nc)
	first := payload[:min(len(payload), ps)]
	wait := n.opts.Liveness / 2
	subject := c.subject
	if subject == "" {
		subject = n.subj.call(c.app)
	}
	if c.spill {
		wait = n.opts.Liveness / 4 // a spill must not make a call much slower
	}
	timedOut, declined := 0, false
	// Retries go to the nodes that announced the app, one by one on their
	// own subjects: the queue group could hand the call to the same stuck
	// node again.
	var retries []string
	for attempt := 1; ; attempt++ {
		if attempt == 2 && !c.spill {
			retries = n.othersHosting(c.app)
			if len(retries) > pickupAttempts-1 {
				retries = retries[:pickupAttempts-1]
			}
		}
		if attempt > 1 && !c.spill {
			if len(retries) == 0 {
				break
			}
			subject, retries = n.subj.direct(retries[0], c.app), retries[1:]
		}
		callID, q := n.calls.add("")
		m := &nats.Msg{Subject: subject, Reply: n.subj.reply(n.id, callID), Header: nats.Header{}, Data: first}
		setInt(m, hLen, int64(len(payload)))
		setInt(m, hWindow, int64(n.opts.Window))
		if c.spill {
			m.Header[hSpill] = []string{"1"}
		}
		if err := n.nc.PublishMsg(m); err != nil {
			n.calls.remove(callID)
			if c.spill {
				return outcomeDeclined
			}
			return c.noWorkers("cluster unreachable")
		}
		ack, outcome := c.awaitPickup(q, wait)
		if c.spill && ack == nil && outcome == "" {
			// Not picked up in time: keep the call local rather than
			// retry (a spill must never make a call slower).
			n.calls.remove(callID)
			return outcomeDeclined
		}
		if outcome == outcomeNoResponders {
			n.calls.remove(callID)
			if attempt == 1 {
				return c.noWorkers("") // nobody subscribes: no node hosts the app
			}
			continue // that node left meanwhile
		}
		if outcome == outcomeDeclined && !c.spill {
			// The node is shutting down: another may take the call.
			n.calls.remove(callID)
			declined = true
			continue
		}
		if ack == nil && outcome == "" && !c.spill {
			n.calls.remove(callID)
			timedOut++
			continue
		}
		if ack == nil {
			n.calls.remove(callID)
			return outcome
		}
		c.ctl = ack.Header.Get(hCtl)
		c.node = ack.Header.Get(hNode)
		c.pid, _ = strconv.Atoi(ack.Header.Get(hPID))
		var pending *nats.Msg
		if kindOf(ack) == kindFrame {
			pending = ack
		}
		outcome = c.stream(q, pending, payload[len(first):], ps)
		n.calls.remove(callID)
		return outcome
	}
	if timedOut == 0 && declined {
		return c.noWorkers("the nodes hosting it are stopping")
	}
	if timedOut == 0 {
		return c.noWorkers("")
	}
	c.fail(compat.ErrWorker(fmt.Sprintf("No node picked up the call for app %s (%d tries, %s each)", c.app, timedOut, wait), 0))
	return arbiter.OutcomeWorker
}

// awaitPickup waits for the node's acknowledgement. It returns the ack,
// or why there is none (declined, no responders), or neither when nobody
// picked the call up in time. It writes nothing to the client.
func (c *remoteCall) awaitPickup(q *msgQueue, wait time.Duration) (*nats.Msg, string) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		m, ok := q.pop()
		if !ok {
			select {
			case <-q.ready:
				continue
			case <-timer.C:
				return nil, ""
			}
		}
		switch {
		case isNoResponders(m) && c.spill, kindOf(m) == kindDecline:
			return nil, outcomeDeclined
		case isNoResponders(m):
			return nil, outcomeNoResponders
		case (kindOf(m) == kindAck || kindOf(m) == kindFrame) && m.Header.Get(hCtl) != "":
			// A frame can carry the pick-up itself (a quick answer).
			return m, ""
		}
	}
}

// stream sends the rest of the request, then writes the answer frames to
// the client until the final one, granting credit as the client takes
// them. The node's silence is bounded by the liveness bound (heartbeats
// come while it works), the worker's by dirty_timeout per frame.
func (c *remoteCall) stream(q *msgQueue, pending *nats.Msg, rest []byte, ps int) string {
	n := c.n
	for len(rest) > 0 {
		k := min(len(rest), ps)
		m := newMsg(c.ctl, kindPart)
		m.Data = rest[:k]
		if err := n.nc.PublishMsg(m); err != nil {
			return c.nodeLost(fmt.Sprintf("sending the request failed: %v", err))
		}
		rest = rest[k:]
	}
	live := time.NewTimer(n.opts.Liveness)
	defer live.Stop()
	var timeout <-chan time.Time
	var timer *time.Timer
	if n.local.Timeout > 0 {
		timer = time.NewTimer(n.local.Timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	var (
		consumed, granted int64
		frameLeft         int64 // bytes still due for the current frame
		frameType         compat.MsgType
	)
	grantEvery := int64(n.opts.Window / 4)
	for {
		m, ok := pending, pending != nil
		pending = nil
		if !ok {
			m, ok = q.pop()
		}
		if !ok {
			select {
			case <-q.ready:
				continue
			case <-live.C:
				return c.nodeLost(fmt.Sprintf("no sign of life for %s", n.opts.Liveness))
			case <-timeout:
				c.cancel()
				c.fail(compat.ErrTimeout("Worker timeout", int64(math.Round(n.local.Timeout.Seconds()))))
				return arbiter.OutcomeTimeout
			}
		}
		live.Reset(n.opts.Liveness)
		var bufs net.Buffers
		whole := false
		switch kindOf(m) {
		case kindHeartbeat:
			continue
		case kindFrame:
			if c.inFrame {
				return c.broken("frame started inside another")
			}
			t, ok1 := getInt(m, hType)
			l, ok2 := getInt(m, hLen)
			if !ok1 || !ok2 || l < int64(len(m.Data)) || l > compat.MaxMessageSize || t < 0 || t > 255 {
				return c.broken("malformed frame")
			}
			frameType, frameLeft = compat.MsgType(t), l
			whole = l == int64(len(m.Data))
			var hdr [compat.HeaderSize]byte
			compat.PutHeader(hdr[:], compat.Header{Type: frameType, Length: uint32(l), ID: c.id})
			bufs = net.Buffers{hdr[:], m.Data}
		case kindPart:
			if !c.inFrame || int64(len(m.Data)) > frameLeft {
				return c.broken("unexpected part")
			}
			bufs = net.Buffers{m.Data}
		default:
			continue
		}
		frameLeft -= int64(len(m.Data))
		if !c.w.Write(bufs) {
			c.cancel()
			return arbiter.OutcomeClient
		}
		c.inFrame = frameLeft > 0
		consumed += int64(len(m.Data))
		if timer != nil {
			timer.Reset(n.local.Timeout) // answer bytes are progress, as a frame is locally
		}
		if frameLeft > 0 {
			if consumed-granted >= grantEvery {
				granted = c.grant(consumed)
			}
			continue
		}
		switch frameType {
		case compat.MsgResponse, compat.MsgEnd:
			return arbiter.OutcomeOK
		case compat.MsgError:
			if whole && compat.ErrorType(m.Data) == "DirtyAppError" {
				return arbiter.OutcomeAppError
			}
			return arbiter.OutcomeError
		}
		if consumed-granted >= grantEvery {
			granted = c.grant(consumed)
		}
	}
}

// grant tells the node how many answer bytes the client has taken.
func (c *remoteCall) grant(consumed int64) int64 {
	m := newMsg(c.ctl, kindCredit)
	setInt(m, hConsumed, consumed)
	_ = c.n.nc.PublishMsg(m)
	return consumed
}

// cancel tells the node to stop the call (its worker cancels the stream).
func (c *remoteCall) cancel() { _ = c.n.nc.PublishMsg(newMsg(c.ctl, kindCancel)) }

// nodeLost answers a call whose node went silent or away.
func (c *remoteCall) nodeLost(why string) string {
	c.cancel()
	c.fail(compat.ErrWorker(fmt.Sprintf("Remote node %s lost during the call: %s", c.node, why), c.pid))
	return arbiter.OutcomeWorker
}

// broken ends a call whose messages make no sense (a bug or a foreign
// publisher on our subjects): the client gets an error, never bad bytes,
// unless a frame was half written, which breaks the client connection
// anyway.
func (c *remoteCall) broken(why string) string {
	c.cancel()
	c.fail(compat.ErrGeneric("gdirty cluster: bad answer from node %s: %s", c.node, why))
	return arbiter.OutcomeError
}
