package cluster

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// msgQueue hands the messages of one call from a subscription callback to
// the goroutine running the call. push never blocks, so one slow call can
// never stall a subscription shared by every call (NATS would drop
// messages of a slow consumer); what it holds is bounded by the protocol
// instead: the flow-control window for answers, the request's own size for
// request parts.
type msgQueue struct {
	// reply is where the serving side sends heartbeats (set before the
	// call is visible to the ticker, never changed after).
	reply string

	mu     sync.Mutex
	items  []*nats.Msg
	closed bool
	ready  chan struct{}
}

func newMsgQueue() *msgQueue { return &msgQueue{ready: make(chan struct{}, 1)} }

func (q *msgQueue) push(m *nats.Msg) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, m)
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the oldest message, if any.
func (q *msgQueue) pop() (*nats.Msg, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil, false
	}
	m := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil
	}
	return m, true
}

// close drops what is queued and what arrives later.
func (q *msgQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.mu.Unlock()
}

// registry maps call ids to their queues (one per side of a node).
type registry struct {
	mu    sync.Mutex
	next  uint64
	calls map[uint64]*msgQueue
}

func newRegistry() *registry { return &registry{calls: map[uint64]*msgQueue{}} }

func (r *registry) add(reply string) (uint64, *msgQueue) {
	q := newMsgQueue()
	q.reply = reply
	r.mu.Lock()
	r.next++
	id := r.next
	r.calls[id] = q
	r.mu.Unlock()
	return id, q
}

func (r *registry) remove(id uint64) {
	r.mu.Lock()
	q := r.calls[id]
	delete(r.calls, id)
	r.mu.Unlock()
	if q != nil {
		q.close()
	}
}

// deliver routes a message to its call by the call id ending its subject;
// messages for finished calls are dropped.
func (r *registry) deliver(m *nats.Msg) {
	id, ok := lastToken(m.Subject)
	if !ok {
		return
	}
	r.mu.Lock()
	q := r.calls[id]
	r.mu.Unlock()
	if q != nil {
		q.push(m)
	}
}

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// replies returns the reply subjects of the calls in progress.
func (r *registry) replies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.calls))
	for _, q := range r.calls {
		out = append(out, q.reply)
	}
	return out
}
