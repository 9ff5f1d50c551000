package cluster

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// startEmbedded runs --cluster-listen's server on a random 127.0.0.1 port
// until the test ends.
func startEmbedded(t *testing.T, o *Options) *EmbeddedServer {
	t.Helper()
	o.Listen, o.DataDir = "127.0.0.1:0", t.TempDir()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := StartEmbedded(o, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

func connectTo(url string, o Options, extra ...nats.Option) (*nats.Conn, error) {
	o.URL, o.Listen = url, ""
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return Connect(&o, "test", extra...)
}

// The embedded server asks the other nodes for this node's token, serves
// this node in-process, and has JetStream (the cluster stash) on.
func TestEmbeddedServerTokenInProcessJetStream(t *testing.T) {
	o := &Options{Token: "tok-1"}
	e := startEmbedded(t, o)

	self, err := connectTo(e.URL, *o, e.InProcess())
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	defer self.Close()
	if self.ConnectedAddr() != "pipe" {
		t.Fatalf("this node reaches its own server through %q, want an in-process pipe", self.ConnectedAddr())
	}
	if self.MaxPayload() != EmbeddedMaxPayload {
		t.Fatalf("max_payload %d, want %d", self.MaxPayload(), EmbeddedMaxPayload)
	}
	js, err := self.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("JetStream: %v", err)
	}

	other, err := connectTo(e.URL, Options{Token: "tok-1"})
	if err != nil {
		t.Fatalf("a node with the token: %v", err)
	}
	other.Close()
	for _, bad := range []Options{{}, {Token: "tok-2"}, {User: "u", Password: "p"}} {
		if nc, err := connectTo(e.URL, bad); err == nil {
			nc.Close()
			t.Fatalf("%+v: connected to a server that wants a token", bad)
		}
	}
}

// With a certificate the embedded server speaks TLS; with a CA as well it
// wants client certificates signed by it. The node itself still joins
// in-process (nothing leaves the process).
func TestEmbeddedServerMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, dir, "ca", nil, true)
	srvCert := newCert(t, dir, "server", ca, false)
	cliCert := newCert(t, dir, "client", ca, false)
	o := &Options{TLSCA: ca.certFile, TLSCert: srvCert.certFile, TLSKey: srvCert.keyFile}
	e := startEmbedded(t, o)
	url := strings.Replace(e.URL, "nats://", "tls://", 1)

	self, err := connectTo(e.URL, *o, e.InProcess())
	if err != nil {
		t.Fatalf("in-process connection with TLS settings: %v", err)
	}
	self.Close()
	good := Options{TLSCA: ca.certFile, TLSCert: cliCert.certFile, TLSKey: cliCert.keyFile}
	nc, err := connectTo(url, good)
	if err != nil {
		t.Fatalf("mutual TLS refused: %v", err)
	}
	if !nc.TLSRequired() {
		t.Fatal("the server does not require TLS")
	}
	nc.Close()
	for name, bad := range map[string]Options{
		"plain":   {},
		"no cert": {TLSCA: ca.certFile},
		"no CA":   {TLSCert: cliCert.certFile, TLSKey: cliCert.keyFile},
		"foreign": {TLSCA: ca.certFile, TLSCert: newCert(t, dir, "stranger", nil, false).certFile, TLSKey: dir + "/stranger-key.pem"},
	} {
		if nc, err := connectTo(url, bad); err == nil {
			nc.Close()
			t.Fatalf("%s: connected", name)
		}
	}
}

// A random port without a data directory gets a JetStream store of its
// own (nothing could find it again), removed at stop.
func TestEmbeddedServerRandomPortScratchStore(t *testing.T) {
	o := &Options{Listen: "127.0.0.1:0"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := StartEmbedded(o, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	dir := e.scratch
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		e.Stop()
		t.Fatalf("scratch store %q: %v", dir, err)
	}
	e.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("scratch store %s left after stop: %v", dir, err)
	}
}

// A taken port is a clear error at once, not a wait for readiness.
func TestEmbeddedServerPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := &Options{Listen: l.Addr().String(), DataDir: t.TempDir()}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		e, err := StartEmbedded(o, quietLog())
		if err == nil {
			e.Stop()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("a taken port: %v", err)
		}
	case <-time.After(embeddedReady / 2):
		t.Fatal("a taken port was not refused before the readiness bound")
	}
}

func TestEmbeddedServerOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Listen: "4222"}, "--cluster-listen"},
		{Options{Listen: "127.0.0.1:http"}, "need a port number"},
		{Options{Listen: "127.0.0.1:70000"}, "need a port number"},
		{Options{Listen: "127.0.0.1:0", CredsFile: "x.creds"}, "not a creds file"},
		{Options{Listen: "127.0.0.1:0", TLSCert: "/nonexistent.pem", TLSKey: "/nonexistent-key.pem"}, "TLS"},
	} {
		if _, err := serverOptions(&tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
}
