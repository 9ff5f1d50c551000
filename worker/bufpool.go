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

// bufPool keeps a few payload buffers of one link for reuse.
type bufPool struct {
	mu     sync.Mutex
	free   [][]byte // large whole frames
	pieces [][]byte // pieceBuf-sized
}

// maxPooled bounds the idle large buffers kept per link; maxPieces the
// idle piece buffers (a call holds at most creditWindow of them in flight).
const (
	maxPooled = 2
	maxPieces = 8
)

// pooled reports whether a payload of n bytes is read into a pool buffer.
func pooled(n int) bool { return n >= minPooled }

func (p *bufPool) get(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= pieceBuf {
		if k := len(p.pieces); k > 0 {
			b := p.pieces[k-1]
			p.pieces[k-1] = nil
			p.pieces = p.pieces[:k-1]
			return b[:n]
		}
		return make([]byte, n, pieceBuf)
	}
	for i, b := range p.free {
		if cap(b) >= n {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]byte, n)
}

func (p *bufPool) put(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cap(b) == pieceBuf {
		if len(p.pieces) < maxPieces {
			p.pieces = append(p.pieces, b[:0])
		}
		return
	}
	if cap(b) < largePayload {
		return
	}
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
