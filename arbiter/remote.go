package arbiter

import "net"

// RemoteCaller runs calls for apps no local worker hosts on another
// place that hosts them (package cluster, with --cluster). It is consulted
// only when Config.Remote is set, so a gdirty without a cluster pays one
// nil check per call.
type RemoteCaller interface {
	// Call runs one REQUEST payload for app and writes every answer frame
	// (header with the client's id, then payload bytes untouched) to the
	// client with write, ending with exactly one final frame; it returns
	// the call's outcome (Outcome*) for metrics.
	Call(app string, id uint64, payload []byte, write func(net.Buffers) bool) string
}

// remoteFor returns the RemoteCaller a call for app goes to, or nil when
// the call stays local: the local pool hosts the app, the connection comes
// from the cluster itself (a node serves only what it hosts, so calls
// never loop between nodes), or there is no cluster.
func (c *clientConn) remoteFor(app string) RemoteCaller {
	r := c.s.cfg.Remote
	if r == nil || c.fromCluster || c.s.router.Hosts(app) {
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

// DialLocal returns an in-process connection served by ServeConn.
func (s *Server) DialLocal() (net.Conn, error) {
	a, b := net.Pipe()
	go s.ServeConn(b)
	return a, nil
}

// SetRemote sets Config.Remote; it must be called before Serve (the node
// needs DialLocal, so it is built after the server).
func (s *Server) SetRemote(r RemoteCaller) { s.cfg.Remote = r }
