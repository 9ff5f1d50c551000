package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gdirty/gdirty/compat"
)

// The serving side: a call for an app this node hosts arrives on the app's
// call subject; the node picks it up (ack), runs it on its own arbiter
// through an in-process connection, and sends the answer frames back as
// they come, within the caller's flow-control window.

// maxCreditWait bounds how long a node waits for a caller that stopped
// granting credit (a caller node that died, or a client that stopped
// reading): the stream is then cancelled in the worker.
const maxCreditWait = 60 * time.Second

func (n *Node) onCall(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	go n.serve(m)
}

type served struct {
	n      *Node
	id     uint64
	q      *msgQueue
	reply  string
	window int64
	conn   *localConn

	mu       sync.Mutex
	acked    bool // the caller knows the call is picked up
	sent     int64
	credited int64
	credit   chan struct{} // signalled when credit arrives
	canceled bool
}

// ackDelay is how long a node may hold back the pick-up message of a
// call whose request came whole: an answer sent within it carries the
// pick-up itself (one message less per small call). It is short because a
// node that dies before the pick-up went out leaves the caller believing
// the call never started (it is offered to another node).
func (n *Node) ackDelay() time.Duration { return min(n.opts.Liveness/10, 20*time.Millisecond) }

func (n *Node) serve(req *nats.Msg) {
	id, q := n.serving.add(req.Reply)
	defer n.serving.remove(id)
	s := &served{n: n, id: id, q: q, reply: req.Reply, window: DefaultWindow, credit: make(chan struct{}, 1)}
	if w, ok := getInt(req, hWindow); ok && w >= 64<<10 && w <= 1<<30 {
		s.window = w
	}
	total := int64(len(req.Data))
	if l, ok := getInt(req, hLen); ok {
		total = l
	}
	if n.closing() || (req.Header.Get(hSpill) != "" && !n.hasFree(req.Subject)) {
		_ = n.nc.PublishMsg(newMsg(req.Reply, kindDecline))
		return
	}
	if total != int64(len(req.Data)) {
		// The caller waits for the control subject to send the rest.
		if !s.sendAck() {
			return
		}
	} else {
		t := time.AfterFunc(n.ackDelay(), func() { s.sendAck() })
		defer t.Stop()
	}
	if total < int64(len(req.Data)) || total > compat.MaxMessageSize {
		s.fail(compat.ErrGeneric("gdirty cluster: malformed remote request (%d bytes announced, %d sent)", total, len(req.Data)))
		return
	}
	if err := s.sendRequest(req.Data, total); err != nil {
		n.log.Debugf("cluster: remote request dropped: %v", err)
		return
	}
	stop := make(chan struct{})
	var control sync.WaitGroup
	control.Add(1)
	go func() { defer control.Done(); s.control(stop) }()
	err := s.relay()
	close(stop)
	control.Wait() // nothing may close the connection once it is reused
	if err != nil {
		s.conn.Close()
		if !s.isCanceled() {
			n.log.Debugf("cluster: remote call ended: %v", err)
		}
		return
	}
	n.local.pool.put(s.conn)
}

// ackHeaders marks m as the call's pick-up (control subject, node).
func (s *served) ackHeaders(m *nats.Msg) {
	m.Header[hCtl] = []string{s.n.subj.ctl(s.n.id, s.id)}
	m.Header[hNode] = []string{s.n.opts.NodeName}
	m.Header[hPID] = []string{strconv.Itoa(os.Getpid())}
}

// sendAck sends the pick-up unless a message carried it already.
func (s *served) sendAck() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acked {
		return true
	}
	s.acked = true
	m := newMsg(s.reply, kindAck)
	s.ackHeaders(m)
	return s.n.nc.PublishMsg(m) == nil
}

// publish sends a message to the caller; the first one carries the
// pick-up when no ack went out yet.
func (s *served) publish(m *nats.Msg) error {
	s.mu.Lock()
	if !s.acked {
		s.acked = true
		s.ackHeaders(m)
	}
	s.mu.Unlock()
	return s.n.nc.PublishMsg(m)
}

// hasFree reports whether the app a call subject names has a free local
// worker (a spilled call is taken only then).
func (n *Node) hasFree(subject string) bool {
	if n.local.Free == nil {
		return false
	}
	i := strings.LastIndexByte(subject, '.')
	app, ok := appFromToken(subject[i+1:])
	return ok && n.local.Free(app)
}

// fail answers the call with an error frame of its own.
func (s *served) fail(e *compat.DirtyError) {
	m := newMsg(s.reply, kindFrame)
	p := e.Payload()
	setInt(m, hType, int64(compat.MsgError))
	setInt(m, hLen, int64(len(p)))
	m.Data = p
	_ = s.publish(m)
}

// sendRequest writes the REQUEST frame to the arbiter: the first part
// came with the call, the rest arrive on the control subject. A caller
// silent for longer than the liveness bound is gone.
func (s *served) sendRequest(first []byte, total int64) error {
	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: compat.MsgRequest, Length: uint32(total), ID: 1})
	for {
		conn, reused, err := s.n.local.pool.get()
		if err != nil {
			s.fail(compat.ErrWorker(fmt.Sprintf("node %s cannot reach its arbiter: %v", s.n.opts.NodeName, err), os.Getpid()))
			return err
		}
		bufs := net.Buffers{hdr[:], first}
		if _, err = bufs.WriteTo(conn); err == nil {
			s.conn = conn
			break
		}
		conn.Close()
		if !reused {
			s.fail(compat.ErrWorker(fmt.Sprintf("node %s cannot reach its arbiter: %v", s.n.opts.NodeName, err), os.Getpid()))
			return fmt.Errorf("write request: %w", err)
		}
		// An idle connection the arbiter closed meanwhile: a new one.
	}
	got := int64(len(first))
	timer := time.NewTimer(s.n.opts.Liveness)
	defer timer.Stop()
	for got < total {
		m, ok := s.q.pop()
		if !ok {
			select {
			case <-s.q.ready:
				continue
			case <-timer.C:
				s.conn.Close()
				return errors.New("caller stopped sending the request")
			}
		}
		switch kindOf(m) {
		case kindPart:
			if got+int64(len(m.Data)) > total {
				s.conn.Close()
				return errors.New("request parts exceed the announced length")
			}
			if _, err := s.conn.Write(m.Data); err != nil {
				s.conn.Close()
				return fmt.Errorf("write request: %w", err)
			}
			got += int64(len(m.Data))
			timer.Reset(s.n.opts.Liveness)
		case kindCancel:
			s.conn.Close()
			return errors.New("caller cancelled")
		}
	}
	return nil
}

// control applies the caller's credits and cancel while the call runs.
func (s *served) control(stop <-chan struct{}) {
	for {
		m, ok := s.q.pop()
		if !ok {
			select {
			case <-s.q.ready:
				continue
			case <-stop:
				return
			}
		}
		switch kindOf(m) {
		case kindCredit:
			if b, ok := getInt(m, hConsumed); ok {
				s.mu.Lock()
				if b > s.credited {
					s.credited = b
				}
				s.mu.Unlock()
				select {
				case s.credit <- struct{}{}:
				default:
				}
			}
		case kindCancel:
			s.mu.Lock()
			s.canceled = true
			s.mu.Unlock()
			// Closing the connection is what cancels the stream in the
			// worker: the arbiter sees its client go away.
			_ = s.conn.Close()
			select {
			case s.credit <- struct{}{}:
			default:
			}
		}
	}
}

func (s *served) isCanceled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canceled
}

// relay reads answer frames from the arbiter and publishes them in parts
// of at most max_payload, never more than the window ahead of the caller.
func (s *served) relay() error {
	r := s.conn.r
	ps := partSize(s.n.nc)
	var buf []byte
	var hdr [compat.HeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
		h, err := compat.ParseHeader(hdr[:])
		if err != nil {
			return fmt.Errorf("answer header: %w", err)
		}
		remaining := int(h.Length)
		kind := kindFrame
		for first := true; first || remaining > 0; first = false {
			k := min(remaining, ps)
			if k > cap(buf) {
				buf = make([]byte, k) // at most one part: bounded by max_payload
			}
			if _, err := io.ReadFull(r, buf[:k]); err != nil {
				return fmt.Errorf("read answer: %w", err)
			}
			if err := s.waitWindow(int64(k)); err != nil {
				return err
			}
			m := newMsg(s.reply, kind)
			if first {
				setInt(m, hType, int64(h.Type))
				setInt(m, hLen, int64(h.Length))
			}
			// PublishMsg copies the data into the connection's buffer,
			// so buf is free again when it returns.
			m.Data = buf[:k]
			if err := s.publish(m); err != nil {
				return fmt.Errorf("publish answer: %w", err)
			}
			remaining -= k
			kind = kindPart
		}
		switch h.Type {
		case compat.MsgResponse, compat.MsgError, compat.MsgEnd:
			return nil
		}
	}
}

// waitWindow blocks until k more bytes fit in the caller's window (one
// message always fits when nothing is outstanding).
func (s *served) waitWindow(k int64) error {
	var timer *time.Timer
	for {
		s.mu.Lock()
		outstanding := s.sent - s.credited
		canceled := s.canceled
		if !canceled && (outstanding == 0 || outstanding+k <= s.window) {
			s.sent += k
			s.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		s.mu.Unlock()
		if canceled {
			return errors.New("caller cancelled")
		}
		if timer == nil {
			timer = time.NewTimer(maxCreditWait)
			defer timer.Stop()
		}
		select {
		case <-s.credit:
		case <-timer.C:
			return fmt.Errorf("caller granted no credit for %s", maxCreditWait)
		}
	}
}
