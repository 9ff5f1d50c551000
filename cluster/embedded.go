package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// EmbeddedMaxPayload is the max_payload of the server --cluster-listen
// runs: larger than NATS's 1 MiB default so typical answers travel in one
// message (larger ones are split anyway).
const EmbeddedMaxPayload = 8 << 20

// embeddedReady bounds the server's start-up (JetStream recovers its store
// then, which takes a while for a big stash).
const embeddedReady = 30 * time.Second

// EmbeddedServer is the real nats-server that --cluster-listen runs inside
// this gdirty, for a small deployment without a NATS of its own. It is
// linked into gdirty-cluster only: the lean gdirty (built with -tags
// lean) never carries it and hands a clustered run to gdirty-cluster.
type EmbeddedServer struct {
	srv     *server.Server
	scratch string // a JetStream directory of its own, removed at stop
	// URL is where the other nodes reach it (nats://HOST:PORT).
	URL string
}

// StartEmbedded runs nats-server on o.Listen with JetStream storing under
// o.DataDir (default: a directory under the system temp dir named after
// the cluster and port, so a restarted gdirty finds its stash again; with
// port 0, a random port, a fresh directory removed at stop).
// Clients must present the token or user and password this node uses, if
// any; with --cluster-tls-cert/key the server speaks TLS with that
// certificate, and with --cluster-tls-ca it also requires client
// certificates signed by that CA.
func StartEmbedded(o *Options, log logrus.FieldLogger) (*EmbeddedServer, error) {
	sopts, err := serverOptions(o)
	if err != nil {
		return nil, err
	}
	var scratch string
	if sopts.StoreDir == "" {
		// A random port and no data directory: nothing could find this
		// store again, so it is a fresh one, removed at stop.
		if scratch, err = os.MkdirTemp("", "gdirty-nats-"); err != nil {
			return nil, fmt.Errorf("JetStream directory: %w", err)
		}
		sopts.StoreDir = scratch
	} else if err := os.MkdirAll(sopts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("--cluster-data-dir: %w", err)
	}
	e := &EmbeddedServer{scratch: scratch}
	defer func() {
		if e.srv == nil && scratch != "" {
			os.RemoveAll(scratch)
		}
	}()
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen %s: %w", o.Listen, err)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(serverLog{l: log.WithField("component", "nats-server"), fatal: fatal}, false, false, false)
	go srv.Start()
	// A server that cannot start (the port is taken) says so through its
	// log's Fatalf and never becomes ready: fail at once, not at the bound.
	deadline := time.Now().Add(embeddedReady)
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		var why string
		select {
		case why = <-fatal:
		default:
			if time.Now().After(deadline) {
				why = fmt.Sprintf("nats-server not ready within %s (see its log lines above)", embeddedReady)
			}
		}
		if why != "" {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("--cluster-listen %s: %s", o.Listen, why)
		}
	}
	dialHost := sopts.Host
	if dialHost == "" || dialHost == "0.0.0.0" || dialHost == "::" {
		dialHost = "127.0.0.1"
	}
	port := sopts.Port
	if a, ok := srv.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	e.srv, e.URL = srv, "nats://"+net.JoinHostPort(dialHost, strconv.Itoa(port))
	log.Infof("cluster: nats-server %s listening on %s, JetStream in %s", server.VERSION, srv.Addr(), sopts.StoreDir)
	return e, nil
}

// serverOptions are nats-server's options for o (the same settings the
// project used to write into a nats-server config file).
func serverOptions(o *Options) (*server.Options, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("--cluster-listen %q: need a port number", o.Listen)
	}
	if o.CredsFile != "" {
		return nil, errors.New("--cluster-listen: the server gdirty runs takes a token or user and password, not a creds file")
	}
	dataDir := o.DataDir
	if dataDir == "" && port != 0 {
		dataDir = filepath.Join(os.TempDir(), fmt.Sprintf("gdirty-nats-%s-%d", o.Name, port))
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server's own 0 means its default, 4222
	}
	s := &server.Options{
		Host:       host,
		Port:       port,
		ServerName: strings.NewReplacer(" ", "_", ":", "_").Replace(o.NodeName),
		MaxPayload: EmbeddedMaxPayload,
		JetStream:  true,
		StoreDir:   dataDir,
		NoSigs:     true, // gdirty owns the process's signals
	}
	switch {
	case o.Token != "":
		s.Authorization = o.Token
	case o.User != "":
		s.Username, s.Password = o.User, o.Password
	}
	if o.TLSCert != "" {
		cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: o.TLSCert, KeyFile: o.TLSKey, CaFile: o.TLSCA, Verify: o.TLSCA != "",
		})
		if err != nil {
			return nil, fmt.Errorf("--cluster-listen TLS: %w", err)
		}
		s.TLSConfig, s.TLS, s.TLSVerify = cfg, true, o.TLSCA != ""
		s.TLSTimeout = 2
	}
	return s, nil
}

// InProcess is the connect option that joins this node to its own server
// without a TCP hop: one process fewer on every remote call's path. It
// also drops the client TLS settings (which are for the other nodes'
// servers): nothing leaves the process, and the server offers no TLS on an
// in-process connection.
func (e *EmbeddedServer) InProcess() nats.Option {
	return func(o *nats.Options) error {
		o.InProcessServer = e.srv
		o.Secure, o.TLSConfig = false, nil
		return nil
	}
}

// Stop shuts the server down and waits for it; the JetStream data stays.
func (e *EmbeddedServer) Stop() {
	if e == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if e.scratch != "" {
		os.RemoveAll(e.scratch)
	}
}

// serverLog passes the server's log lines to gdirty's log: errors and
// warnings as such, notices (start-up banner) and debug lines at debug
// level. Fatalf never exits the process: it logs and hands the message to
// StartEmbedded (the server does not start).
type serverLog struct {
	l     logrus.FieldLogger
	fatal chan<- string
}

func (s serverLog) Noticef(f string, a ...any) { s.l.Debugf(f, a...) }
func (s serverLog) Warnf(f string, a ...any)   { s.l.Warnf(f, a...) }
func (s serverLog) Fatalf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	s.l.Error(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s serverLog) Errorf(f string, a ...any) { s.l.Errorf(f, a...) }
func (s serverLog) Debugf(f string, a ...any) { s.l.Debugf(f, a...) }
func (s serverLog) Tracef(string, ...any)     {}
