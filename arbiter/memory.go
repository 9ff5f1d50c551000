package arbiter

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

// idleCheck is how often the arbiter looks whether a load has ended.
const idleCheck = 3 * time.Second

// releaseIdleMemory returns the heap a load left behind to the OS once
// calls stop: Go's background scavenger gives it back only slowly, so an
// arbiter that served large payloads would otherwise sit on that memory
// while idle. It costs one wake-up per idleCheck, and one forced
// collection per load that ends.
func (s *Server) releaseIdleMemory(ctx context.Context) {
	t := time.NewTicker(idleCheck)
	defer t.Stop()
	// Start-up (config, pyshim, spawning) leaves garbage too: released
	// once the first quiet period is seen.
	last, released := s.calls.Load(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := s.calls.Load(); n != last {
			last, released = n, false
			continue
		}
		if !released {
			// Two collections: the first moves pooled buffers to their
			// pools' victim caches, the second (in FreeOSMemory) frees them.
			runtime.GC()
			debug.FreeOSMemory()
			released = true
		}
	}
}
