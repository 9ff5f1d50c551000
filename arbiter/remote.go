package arbiter

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// RemoteCaller runs calls for apps no local worker hosts on another
// place that hosts them (package cluster, with --cluster). It is consulted
// only when Config.Remote is set, so a gdirty without a cluster pays one
// nil check per call.
type RemoteCaller interface {
	// Call runs one REQUEST payload for app and writes every answer frame
	// (header with the client's id, then payload bytes untouched) to the
	// client through w, ending with exactly one final frame; it returns
	// the call's outcome (Outcome*) for metrics.
	Call(app string, id uint64, payload []byte, w ClientWriter) string
}

// ClientWriter is how a RemoteCaller answers the client.
type ClientWriter interface {
	// Write sends bytes to the client: whole frames, or a large frame in
	// pieces (header and first bytes, then the rest). False: the client
	// is gone.
	Write(b net.Buffers) bool
	// Abort closes the connection after the call instead of answering:
	// for a call that failed with a frame half written, where no further
	// frame could be read correctly.
	Abort()
}

type clientWriter struct{ c *clientConn }

func (w clientWriter) Write(b net.Buffers) bool { return w.c.writeBufs(b) }
func (w clientWriter) Abort()                   { w.c.markBroken() }

// Spiller takes calls the local pool has no free worker for (--spill):
// ok is false when no other place had a free worker either, and the call
// then waits for a local worker as usual (nothing was written).
type Spiller interface {
	Spill(app string, id uint64, payload []byte, w ClientWriter) (outcome string, ok bool)
}

// spill tries to run a call elsewhere when every local worker for app is
// busy; handled reports that it did (and answered the client).
func (c *clientConn) spill(app string, id uint64, payload []byte) (outcome string, handled bool) {
	sp := c.s.spiller
	if sp == nil || c.fromCluster || c.format != nil || c.s.router.HasFree(app) {
		return "", false
	}
	return sp.Spill(app, id, payload, clientWriter{c})
}

// remoteFor returns the RemoteCaller a call for app goes to, or nil when
// the call stays local: the local pool hosts the app, the connection comes
// from the cluster itself (a node serves only what it hosts, so calls
// never loop between nodes), or there is no cluster.
func (c *clientConn) remoteFor(app string) RemoteCaller {
	r := c.s.cfg.Remote
	// gunicorn 25.0.x clients (protocol v0) are served by local workers
	// only: the cluster carries v1 frames.
	if r == nil || c.fromCluster || c.format != nil || c.s.router.Hosts(app) {
		return nil
	}
	return r
}

// Hosts reports whether some worker (ready, booting, not retiring) hosts
// app; "" asks for any worker.
func (r *Router[T]) Hosts(app string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hostedLocked(app)
}

// HasFree reports whether a call for app would get a worker at once.
func (r *Router[T]) HasFree(app string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.waiters) > 0 {
		return false
	}
	for _, t := range r.order {
		if t.ready && !t.draining && t.hosts(app) && t.inflight < r.capacity {
			return true
		}
	}
	return false
}

// ServeConn serves one in-process client connection for the cluster: the
// calls other nodes send here. Its calls never go back to the cluster.
// It returns when the connection ends.
func (s *Server) ServeConn(conn net.Conn) {
	s.wg.Add(1)
	defer s.wg.Done()
	c := &clientConn{s: s, conn: conn, fromCluster: true}
	if !s.track(c) {
		conn.Close()
		return
	}
	defer s.untrack(c)
	c.serve()
}

// DialLocal returns a connection to this server, served by ServeConn: a
// Unix socketpair, so it behaves exactly as a client's socket (net.Pipe
// would not: a zero-length write on it blocks until the peer reads).
func (s *Server) DialLocal() (net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, err := fileConn(fds[0], "cluster")
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	theirs, err := fileConn(fds[1], "cluster-peer")
	if err != nil {
		ours.Close()
		return nil, err
	}
	go s.ServeConn(theirs)
	return ours, nil
}

// fileConn wraps a socket fd in a net.Conn (which dups it; the original
// is closed here).
func fileConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	return c, nil
}

// SetRemote sets Config.Remote; it must be called before Serve (the node
// needs DialLocal, so it is built after the server).
func (s *Server) SetRemote(r RemoteCaller) { s.cfg.Remote = r }

// SetSpiller enables --spill; it must be called before Serve.
func (s *Server) SetSpiller(sp Spiller) { s.spiller = sp }

// HasFree reports whether a call for app would get a local worker at once
// (the cluster declines spilled calls when it would not).
func (s *Server) HasFree(app string) bool { return s.router.HasFree(app) }

// Closing reports whether the server is shutting down (the cluster then
// stops taking calls from other nodes).
func (s *Server) Closing() bool { return s.isClosing() }
