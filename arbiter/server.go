// Package arbiter is gdirty's side facing gunicorn: it accepts gunicorn's
// dirty clients on a Unix socket, routes each REQUEST to a worker and sends
// the worker's answers back, and answers STATUS itself.
package arbiter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
)

// Config configures a Server.
type Config struct {
	// Timeout is dirty_timeout: the longest a call may wait for a free
	// worker, and the longest silence from the worker while it runs.
	// Zero disables both.
	Timeout time.Duration
	// Threads is dirty_threads: calls one worker takes at once.
	Threads int
	// MaxQueue bounds the calls waiting for a worker (0 = unbounded).
	MaxQueue int
	// WriteTimeout bounds one write to a client, so a client that stops
	// reading cannot hold a worker's answers forever.
	WriteTimeout time.Duration
	Log          logrus.FieldLogger
	// Apps lists the configured app import paths (for STATUS).
	Apps []string
	// Stash and Manage answer STASH and MANAGE messages; nil means the
	// message type is refused with a DirtyError.
	Stash  Service
	Manage Service
	// Metrics, when set, records calls and worker lifecycle.
	Metrics Recorder
	// AllowUIDs, when non-empty, restricts clients to these uids (and
	// gdirty's own), checked with SO_PEERCRED.
	AllowUIDs []int
	// MaxConns bounds concurrent client connections (0 = no bound); a
	// client over the bound gets a DirtyError for its first request.
	MaxConns int
	// Remote, when set (--cluster), runs calls for apps no local worker
	// hosts on other nodes.
	Remote RemoteCaller
}

// Server is the arbiter: listener, per-connection handlers and router.
type Server struct {
	cfg     Config
	log     logrus.FieldLogger
	router  *Router[*worker.Process]
	pool    *worker.Pool
	metrics Recorder
	spiller Spiller // --spill (remote.go)

	mu       sync.Mutex
	conns    map[*clientConn]struct{}
	closing  bool
	wg       sync.WaitGroup
	listener net.Listener

	// calls counts calls received, so that idle memory release knows
	// when a load has ended; inCall counts connections in a call.
	calls  atomic.Uint64
	inCall atomic.Int32
}

// NewServer returns a server; its Observer must be given to the pool.
func NewServer(cfg Config) *Server {
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noRecorder{}
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Log,
		router:  NewRouter[*worker.Process](cfg.Threads, cfg.MaxQueue),
		conns:   map[*clientConn]struct{}{},
		metrics: cfg.Metrics,
	}
}

// SetPool tells the server which pool it reports on (STATUS), recycles
// workers of (timeouts) and scales (MANAGE, unless Config.Manage is set).
func (s *Server) SetPool(p *worker.Pool) {
	s.pool = p
	if s.cfg.Manage == nil {
		s.cfg.Manage = Manage{Pool: p}
	}
}

// Observer returns the worker-lifecycle observer that keeps the router in
// step with the pool.
func (s *Server) Observer() worker.Observer { return poolObserver{s} }

type poolObserver struct{ s *Server }

func (o poolObserver) WorkerStarted(p *worker.Process) {
	o.s.router.Add(p, p.Apps)
	o.s.metrics.WorkerStarted()
}

func (o poolObserver) WorkerReady(p *worker.Process) { o.s.router.Ready(p) }

func (o poolObserver) WorkerRetiring(p *worker.Process) {
	o.s.router.Drain(p)
	o.s.metrics.WorkerRetired(p.RetireReason())
}

func (o poolObserver) WorkerExited(p *worker.Process) {
	o.s.router.Remove(p)
	o.s.metrics.WorkerExited()
}

func (o poolObserver) CallDone(p *worker.Process) { o.s.router.Release(p) }

// Queued returns how many calls wait for a worker (for metrics).
func (s *Server) Queued() int { return s.router.Queued() }

// Serve accepts clients on l until ctx is cancelled, then stops accepting,
// lets every connection finish the call it is running, and returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	s.listener = l
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, s.shutdown)
	defer stop()
	go s.releaseIdleMemory(ctx)
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.shutdown()
			s.wg.Wait()
			return err
		}
		if !s.admit(conn) {
			continue
		}
		c := &clientConn{s: s, conn: conn}
		if !s.track(c) {
			conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			c.serve()
		}()
	}
}

// admit applies the access rules to a new connection; it closes (or
// answers and closes) a connection it refuses.
func (s *Server) admit(conn net.Conn) bool {
	if len(s.cfg.AllowUIDs) > 0 {
		uid, err := PeerUID(conn)
		if err != nil || !s.uidAllowed(uid) {
			s.log.Warnf("Refused client connection from uid %d: not in --allow-uid (%v)", uid, err)
			conn.Close()
			return false
		}
	}
	if s.cfg.MaxConns > 0 {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n >= s.cfg.MaxConns {
			s.log.Warnf("Refused client connection: %d connections open (--max-connections)", n)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				refuse(conn, fmt.Sprintf("gdirty: too many client connections (limit %d)", s.cfg.MaxConns))
			}()
			return false
		}
	}
	return true
}

func (s *Server) uidAllowed(uid int) bool {
	if uid == os.Geteuid() {
		return true
	}
	for _, u := range s.cfg.AllowUIDs {
		if u == uid {
			return true
		}
	}
	return false
}

// refuse answers the first request on conn with a DirtyError (so the
// client sees why) and closes it.
func refuse(conn net.Conn, message string) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if first, err := r.Peek(1); err == nil && first[0] != 'G' {
		refuseV0(conn, r, message)
		return
	}
	h, _, err := compat.ReadFrame(r, nil)
	if err != nil && !compat.IsKind(err, compat.KindUnknownMessageType) {
		return
	}
	_, _ = conn.Write(compat.ErrGeneric("%s", message).Frame(h.ID))
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) track(c *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// shutdown stops accepting and wakes idle connections; busy ones close
// after their current call.
func (s *Server) shutdown() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	l := s.listener
	conns := make([]*clientConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if l != nil {
		l.Close()
	}
	for _, c := range conns {
		c.wakeIfIdle()
	}
}
