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

func TestRedact(t *testing.T) {
	if got := redact("nats://u:secret@h:4222"); got != "nats://***@h:4222" {
		t.Fatalf("redact: %q", got)
	}
}
