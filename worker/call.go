package worker

import "sync"

// MaxQueuedBytes bounds the answer bytes one call may hold for a caller
// that does not keep up (a client that stopped reading). The link reader
// never waits for a caller — a slow client must not stall the other calls
// on the same worker — so past this bound the call is dropped instead.
// One frame of any size is always accepted.
var MaxQueuedBytes = 64 << 20

// Call is one request in flight on a link. Its answer frames queue here
// without blocking the link; the caller takes them with Next.
type Call struct {
	id uint64

	mu       sync.Mutex
	queue    []Frame
	bytes    int
	gone     bool // the caller stopped listening: drop what arrives
	overflow bool // dropped for holding too much for a slow caller
	ready    chan struct{}
}

func newCall() *Call { return &Call{ready: make(chan struct{}, 1)} }

// push queues a frame for the caller; it never blocks.
func (c *Call) push(f Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return
	}
	if len(c.queue) > 0 && c.bytes+len(f.Payload) > MaxQueuedBytes {
		c.gone, c.overflow = true, true
		c.queue, c.bytes = nil, 0
	} else {
		c.queue = append(c.queue, f)
		c.bytes += len(f.Payload)
	}
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// Ready is signalled when Next may have something.
func (c *Call) Ready() <-chan struct{} { return c.ready }

// Next takes the oldest queued frame. overflow reports that the call was
// dropped because its caller fell too far behind.
func (c *Call) Next() (f Frame, ok, overflow bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overflow {
		return Frame{}, false, true
	}
	if len(c.queue) == 0 {
		return Frame{}, false, false
	}
	f = c.queue[0]
	c.queue[0] = Frame{}
	c.queue = c.queue[1:]
	c.bytes -= len(f.Payload)
	if len(c.queue) == 0 {
		c.queue = nil
	}
	return f, true, false
}

func (c *Call) abandon() {
	c.mu.Lock()
	c.gone = true
	c.queue, c.bytes = nil, 0
	c.mu.Unlock()
}
