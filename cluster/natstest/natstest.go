// Package natstest starts the real nats-server in-process for tests: JetStream
// on, a temporary store directory, a random 127.0.0.1 port. It is imported by
// tests only, so a gdirty binary never links it through this path.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is one running nats-server; Restart keeps its port and store so a
// test can kill NATS and bring it back.
type Server struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// Option adjusts the server options before start (auth, max_payload, ...).
type Option func(*server.Options)

// Start runs a nats-server with JetStream until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	for _, f := range opts {
		f(&o)
	}
	s := &Server{t: t, opts: o}
	s.start()
	// The port is chosen now; a restart must come back on the same one.
	if a, ok := s.srv.Addr().(*net.TCPAddr); ok {
		s.opts.Port = a.Port
	}
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	o := s.opts
	srv, err := server.NewServer(&o)
	if err != nil {
		s.t.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatalf("nats-server not ready within 10s")
	}
	s.srv = srv
}

// URL is the client URL (nats://127.0.0.1:PORT).
func (s *Server) URL() string { return s.srv.ClientURL() }

// Shutdown stops the server (idempotent).
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Inner is the running server (for tests that need its API).
func (s *Server) Inner() *server.Server { return s.srv }
