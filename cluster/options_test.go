package cluster

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string // error substring; "" = valid
	}{
		{Options{URL: "nats://x"}, ""},
		{Options{URL: "nats://x", Name: "a.b"}, "--cluster-name"},
		{Options{URL: "nats://x", Name: strings.Repeat("a", 65)}, "--cluster-name"},
		{Options{URL: "nats://x", Token: "t", User: "u", Password: "p"}, "one of"},
		{Options{URL: "nats://x", User: "u"}, "go together"},
		{Options{URL: "nats://x", TLSCert: "c"}, "go together"},
		{Options{URL: "nats://x", Liveness: 1}, "too short"},
	} {
		err := tc.o.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
	o := Options{URL: "nats://x"}
	if err := o.Validate(); err != nil || o.Name != DefaultName || o.Liveness != DefaultLiveness || o.NodeName == "" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

func TestRedactAndServerConfig(t *testing.T) {
	if got := redact("nats://u:secret@h:4222"); got != "nats://***@h:4222" {
		t.Fatalf("redact: %q", got)
	}
	conf := serverConfig("127.0.0.1", 4222, "/data", &Options{NodeName: "h:1", Token: `to"k`})
	for _, want := range []string{`listen: "127.0.0.1:4222"`, `store_dir: "/data"`, `token: "to\"k"`, "max_payload: 8388608"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("config lacks %s:\n%s", want, conf)
		}
	}
}
