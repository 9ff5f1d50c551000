// Package cluster spreads gdirty over several hosts on NATS: each node
// announces the apps its pool hosts, calls for apps the local pool does not
// host go to a node that does (request/reply with a queue group per app),
// and the stash can live in a JetStream key-value bucket shared by every
// node. Nothing here is touched unless gdirty runs with --cluster or
// --cluster-listen.
package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Options are the cluster settings (flags, env, TOML).
type Options struct {
	// URL is the NATS server list (nats://host:4222[,nats://...]).
	URL string
	// Name is the cluster name: nodes of one cluster share subjects and
	// the stash bucket; several clusters can share one NATS.
	Name string
	// NodeName is shown in status (default: hostname:pid).
	NodeName string

	// Credentials: a NATS .creds file, or a token, or user + password.
	// Secrets come from files or the environment, never from the command
	// line (where ps would show them).
	CredsFile string
	Token     string
	User      string
	Password  string

	// TLS: CA to verify the server, client cert and key for mutual TLS.
	TLSCA, TLSCert, TLSKey string

	// ReconnectWait is the pause between reconnect attempts (reconnects
	// never stop: NATS coming back must heal the cluster by itself).
	ReconnectWait time.Duration

	// Listen, when set (HOST:PORT), runs an embedded nats-server with
	// JetStream in this gdirty; DataDir holds its JetStream store.
	Listen  string
	DataDir string

	// Liveness bounds how long a caller waits for a remote node's sign of
	// life (the pick-up of a call, then its heartbeats) before the call
	// fails with DirtyWorkerError.
	Liveness time.Duration

	// Window is the stream flow-control window: answer bytes a node may
	// send ahead of what the caller has written to its client.
	Window int

	// Spill sends a call to a remote node when every local worker for the
	// app is busy.
	Spill bool
}

// Defaults.
const (
	DefaultName     = "gdirty"
	DefaultLiveness = 3 * time.Second
	DefaultWindow   = 8 << 20
)

// validName reports whether s is a cluster name: it becomes a subject
// token and part of a bucket name. (No regexp: a package-level one would
// be compiled in every gdirty, clustered or not.)
func validName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Enabled reports whether any cluster feature is on.
func (o *Options) Enabled() bool { return o.URL != "" || o.Listen != "" }

// Validate checks the options and fills defaults; errors are one line.
func (o *Options) Validate() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if !validName(o.Name) {
		return fmt.Errorf("--cluster-name %q: use 1-64 letters, digits, '-' or '_'", o.Name)
	}
	if o.Liveness == 0 {
		o.Liveness = DefaultLiveness
	}
	if o.Liveness < 100*time.Millisecond {
		return fmt.Errorf("--cluster-liveness %s is too short (at least 100ms)", o.Liveness)
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Window < 64<<10 {
		return errors.New("--cluster-window must be at least 64 KiB")
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = time.Second
	}
	n := 0
	for _, set := range []bool{o.CredsFile != "", o.Token != "", o.User != "" || o.Password != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("cluster credentials: give one of a creds file, a token, or user and password")
	}
	if (o.User == "") != (o.Password == "") {
		return errors.New("cluster credentials: user and password go together")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("--cluster-tls-cert and --cluster-tls-key go together")
	}
	if o.NodeName == "" {
		host, _ := os.Hostname()
		o.NodeName = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	return nil
}

// ReadSecret returns the trimmed content of a secret file (token or
// password); an empty path gives "".
func ReadSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// natsOptions turns the options into nats.go connect options.
func (o *Options) natsOptions(name string) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		// No reconnect buffer: while NATS is away a publish fails at once,
		// so a remote call fails fast instead of waiting for a pick-up
		// that cannot come.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.TLSCA != "" || o.TLSCert != "" {
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

func (o *Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--cluster-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cluster-tls-ca %s: no PEM certificate found", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--cluster-tls-cert/key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Connect dials NATS with the options. A refused connection (bad
// credentials, TLS, nothing listening) is an error at once: a node that
// cannot join must say so at start, not serve half a cluster.
func Connect(o *Options, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := o.natsOptions(name)
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	url := o.URL
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redact(url), err)
	}
	return nc, nil
}

// redact hides a password given inside a URL.
func redact(url string) string {
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	return url[:scheme+3] + "***@" + url[at+1:]
}
