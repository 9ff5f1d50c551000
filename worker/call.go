package worker

import "sync"

// MaxQueuedBytes bounds the answer bytes one call may hold for a caller
// that does not keep up (a client that stopped reading). The link reader
// never waits for a caller — a slow client must not stall the other calls
// on the same worker. The worker itself stops sending a call's answer once
// creditWindow bytes are unacknowledged, so this bound only catches a
// worker that ignores its window (or sends huge whole frames): past it the
// call is dropped. One frame of any size is always accepted.
var MaxQueuedBytes = 64 << 20

// Call is one request in flight on a link. Its answer frames queue here
// without blocking the link; the caller takes them with Next.
type Call struct {
	id uint64

	// part is the fragmented frame being assembled (reader goroutine only).
	part partial

	mu       sync.Mutex
	queue    []Frame
	bytes    int
	gone     bool // the caller stopped listening: drop what arrives
	overflow bool // dropped for holding too much for a slow caller
	ready    chan struct{}
	// written counts answer payload bytes the caller has passed on;
	// credited is the last count acknowledged to the worker.
	written, credited uint64
}

func newCall() *Call { return &Call{ready: make(chan struct{}, 1)} }

// push queues a frame for the caller; it never blocks. It reports false
// when the frame was dropped (its buffer may then be reused at once).
func (c *Call) push(f Frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return false
	}
	accepted := true
	if len(c.queue) > 0 && c.bytes+len(f.Payload) > MaxQueuedBytes {
		c.gone, c.overflow = true, true
		c.queue, c.bytes = nil, 0
		accepted = false
	} else {
		c.queue = append(c.queue, f)
		c.bytes += len(f.Payload)
	}
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return accepted
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

// Unget puts back a frame just taken with Next, at the head of the queue.
func (c *Call) Unget(f Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return
	}
	c.queue = append([]Frame{f}, c.queue...)
	c.bytes += len(f.Payload)
}

// consumed records n answer bytes passed on by the caller and returns the
// cumulative count to acknowledge, if an acknowledgement is due.
func (c *Call) consumed(n int) (total uint64, due bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written += uint64(n)
	if c.written-c.credited < creditStep {
		return 0, false
	}
	c.credited = c.written
	return c.written, true
}

func (c *Call) isGone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// abandon stops delivery and returns the dropped frames (their buffers
// are free again).
func (c *Call) abandon() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone = true
	dropped := c.queue
	c.queue, c.bytes = nil, 0
	return dropped
}
