package worker

import "sync"

// largePayload is the size from which answer payloads are read into
// recycled buffers: a worker returning 16 MiB blobs would otherwise
// allocate 16 MiB per call and leave the garbage collector to return it.
const largePayload = 256 * 1024

// pieceBuf is the capacity of a recycled piece buffer: one 64 KiB piece of
// a fragmented answer and its prefix. Pieces are the common large-answer
// path, so they get their own class of small, fixed-size buffers.
const (
	pieceBuf  = 64<<10 + 64
	minPooled = 4 << 10 // smaller payloads are cheaper to allocate
)

// bufPool keeps payload buffers of one link for reuse. Piece buffers live
// in a sync.Pool, so the garbage collector drops them once the link is
// idle: an arbiter that served large answers does not keep their buffers.
type bufPool struct {
	mu     sync.Mutex
	free   [][]byte // large whole frames
	pieces sync.Pool
}

// maxPooled bounds the idle large buffers kept per link.
const maxPooled = 2

// pooled reports whether a payload of n bytes is read into a pool buffer.
func pooled(n int) bool { return n >= minPooled }

func (p *bufPool) get(n int) []byte {
	if n <= pieceBuf {
		if b, ok := p.pieces.Get().(*[pieceBuf]byte); ok {
			return b[:n]
		}
		return new([pieceBuf]byte)[:n]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.free {
		if cap(b) >= n {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]byte, n)
}

func (p *bufPool) put(b []byte) {
	if cap(b) == pieceBuf {
		p.pieces.Put((*[pieceBuf]byte)(b[:pieceBuf]))
		return
	}
	if cap(b) < largePayload {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < maxPooled {
		p.free = append(p.free, b[:0])
		return
	}
	// Keep the largest buffers: they serve every smaller payload too.
	for i, f := range p.free {
		if cap(f) < cap(b) {
			p.free[i] = b[:0]
			return
		}
	}
}
