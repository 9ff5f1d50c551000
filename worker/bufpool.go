package worker

import "sync"

// largePayload is the size from which answer payloads are read into
// recycled buffers: a worker returning 16 MiB blobs would otherwise
// allocate 16 MiB per call and leave the garbage collector to return it.
const largePayload = 256 * 1024

// bufPool keeps a few large payload buffers of one link for reuse.
type bufPool struct {
	mu   sync.Mutex
	free [][]byte
}

// maxPooled bounds the idle buffers kept per link.
const maxPooled = 2

func (p *bufPool) get(n int) []byte {
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
