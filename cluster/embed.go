package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sirupsen/logrus"
)

// EmbeddedMaxPayload is the embedded server's max_payload: larger than
// NATS's 1 MiB default so typical answers travel in one message (larger
// ones are split anyway).
const EmbeddedMaxPayload = 8 << 20

// StartEmbedded runs the real nats-server inside this gdirty on
// o.Listen, with JetStream storing under o.DataDir (default: a directory
// under the system temp dir named after the cluster and port, so a
// restarted gdirty finds its stash again). Clients must present the same
// token or user and password this node uses, if any. TLS is not offered
// by the embedded server: use a standalone nats-server for that.
func StartEmbedded(o *Options, log logrus.FieldLogger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("--cluster-listen %q: bad port", o.Listen)
	}
	dir := o.DataDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("gdirty-nats-%s-%d", o.Name, port))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--cluster-data-dir: %w", err)
	}
	sopts := &server.Options{
		ServerName: o.NodeName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: EmbeddedMaxPayload,
		NoSigs:     true,
	}
	switch {
	case o.Token != "":
		sopts.Authorization = o.Token
	case o.User != "":
		sopts.Username, sopts.Password = o.User, o.Password
	case o.CredsFile != "":
		return nil, fmt.Errorf("--cluster-listen: the embedded server takes a token or user and password, not a creds file")
	}
	s, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log.WithField("component", "nats-server")}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s did not start within 10s", o.Listen)
	}
	log.Infof("Embedded nats-server listening on %s (JetStream in %s)", s.ClientURL(), dir)
	return s, nil
}

// natsLogger passes the server's log lines to logrus; notices are debug
// level (the server is chatty at start), warnings and errors stay.
type natsLogger struct{ l logrus.FieldLogger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debugf(format, v...) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warnf(format, v...) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Errorf(format, v...) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Errorf(format, v...) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debugf(format, v...) }
func (n natsLogger) Tracef(format string, v ...any)  {}
