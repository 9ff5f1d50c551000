package worker

import (
	"runtime"
	"sync"
)

// linkWriter batches writes to a worker: requests that several client
// goroutines start at about the same time leave in one writev, so the
// worker wakes once for all of them instead of once each (at concurrency
// 16 that wake-up is most of the arbiter's cost per call). The goroutine
// that finds nobody writing becomes the flusher: it yields once so that
// other runnable goroutines can queue their frames, then writes everything
// queued until the queue is empty. The others wait for their bytes to be
// written, so a caller still learns whether its own frame went out.
type linkWriter struct {
	write func(bufs [][]byte) error

	mu       sync.Mutex
	cond     sync.Cond
	queue    [][]byte
	spare    [][]byte
	queued   uint64 // sequence number of the last frame queued
	done     uint64 // ... of the last frame written
	err      error  // the write that failed; every later send fails too
	flushing bool
}

func newLinkWriter(write func(bufs [][]byte) error) *linkWriter {
	w := &linkWriter{write: write}
	w.cond.L = &w.mu
	return w
}

// send writes one frame's buffers (in order, never interleaved with other
// frames) and returns once they are written. gather: yield first so that
// concurrent senders share the write (for requests; control frames go at
// once).
func (w *linkWriter) send(gather bool, bufs ...[]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.queue = append(w.queue, bufs...)
	w.queued++
	mine := w.queued
	if w.flushing {
		for w.done < mine && w.err == nil {
			w.cond.Wait()
		}
		return w.result(mine)
	}
	w.flushing = true
	if gather {
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
	}
	for len(w.queue) > 0 && w.err == nil {
		batch, upto := w.queue, w.queued
		w.queue = w.spare[:0]
		w.mu.Unlock()
		err := w.write(batch)
		clear(batch) // drop references to payloads
		w.mu.Lock()
		w.spare = batch[:0]
		if err != nil {
			w.err = err
		} else {
			w.done = upto
		}
		w.cond.Broadcast()
	}
	w.flushing = false
	return w.result(mine)
}

func (w *linkWriter) result(seq uint64) error {
	if w.done >= seq {
		return nil
	}
	return w.err
}
