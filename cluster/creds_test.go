package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/gdirty/gdirty/cluster/natstest"
)

// userCreds writes a .creds file (user JWT + seed, the format `nsc`
// writes) for a new user of the account akp signs for.
func userCreds(t *testing.T, dir, name string, akp nkeys.KeyPair) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newAccount(t *testing.T, okp nkeys.KeyPair) (nkeys.KeyPair, string, string) {
	t.Helper()
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	return akp, apub, ajwt
}

// --cluster-creds against a NATS in operator (JWT) mode: a user of a
// trusted account joins and can call; a user of an account the operator
// never signed, or a creds file that is not one, is refused at start.
func TestConnectCredsFile(t *testing.T) {
	dir := t.TempDir()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := okp.PublicKey()
	akp, apub, ajwt := newAccount(t, okp)
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, func(o *server.Options) {
		o.TrustedKeys = []string{opub}
		o.AccountResolver = resolver
		o.JetStream = false // JetStream in operator mode wants a system account; not what is tested here
	})

	good := Options{URL: srv.URL(), CredsFile: userCreds(t, dir, "good", akp)}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(&good, "test")
	if err != nil {
		t.Fatalf("a trusted user's creds refused: %v", err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe("gd.test.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if m, err := nc.Request("gd.test.echo", []byte("hi"), 5*time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("request through a creds connection: %v %v", m, err)
	}

	strangerKP, _, _ := newAccount(t, okp) // signed by the operator, never pushed to the server
	junk := filepath.Join(dir, "junk.creds")
	if err := os.WriteFile(junk, []byte("not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"unknown account": userCreds(t, dir, "stranger", strangerKP),
		"not creds":       junk,
		"missing file":    filepath.Join(dir, "absent.creds"),
	} {
		bad := Options{URL: srv.URL(), CredsFile: path}
		_ = bad.Validate()
		nc, err := Connect(&bad, "test")
		if err == nil {
			nc.Close()
			t.Fatalf("%s: connected", name)
		}
		if !strings.Contains(err.Error(), "connect to NATS") {
			t.Fatalf("%s: error without context: %v", name, err)
		}
	}
}
