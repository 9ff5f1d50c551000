package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/gdirty/gdirty/cluster/natstest"
)

// certPair is a certificate signed by ca (self-signed when ca is nil),
// written as PEM files.
type certPair struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certFile string
	keyFile  string
}

func newCert(t *testing.T, dir, name string, ca *certPair, isCA bool) *certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	p := &certPair{cert: cert, key: key, certFile: filepath.Join(dir, name+".pem"), keyFile: filepath.Join(dir, name+"-key.pem")}
	if err := os.WriteFile(p.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Mutual TLS: the node verifies the server with --cluster-tls-ca and shows
// its own certificate; without them it is refused.
func TestConnectMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, dir, "ca", nil, true)
	srvCert := newCert(t, dir, "server", ca, false)
	cliCert := newCert(t, dir, "client", ca, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	pair, err := tls.LoadX509KeyPair(srvCert.certFile, srvCert.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, func(o *server.Options) {
		o.TLS, o.TLSVerify = true, true
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	})
	url := strings.Replace(srv.URL(), "nats://", "tls://", 1)

	good := Options{URL: url, TLSCA: ca.certFile, TLSCert: cliCert.certFile, TLSKey: cliCert.keyFile}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(&good, "test")
	if err != nil {
		t.Fatalf("mutual TLS refused: %v", err)
	}
	nc.Close()

	noCert := Options{URL: url, TLSCA: ca.certFile}
	_ = noCert.Validate()
	if nc, err := Connect(&noCert, "test"); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	}
	noCA := Options{URL: url, TLSCert: cliCert.certFile, TLSKey: cliCert.keyFile}
	_ = noCA.Validate()
	if nc, err := Connect(&noCA, "test"); err == nil {
		nc.Close()
		t.Fatal("connected without verifying the server")
	}
	badCA := Options{URL: url, TLSCA: cliCert.keyFile}
	_ = badCA.Validate()
	if _, err := Connect(&badCA, "test"); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without a certificate: %v", err)
	}
}
