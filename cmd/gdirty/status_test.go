package main

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/gdirty/gdirty/compat"
)

// STATUS's last_heartbeat is a float; --json must keep 1.0 a float (an
// integral value used to come out as "1", which Python reads as an int).
func TestStatusJSONKeepsFloatsAndOrder(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{compat.NewDict("last_heartbeat", 1.0), `{"last_heartbeat":1.0}`},
		{compat.NewDict("b", 0.35, "a", int64(2)), `{"b":0.35,"a":2}`},
		{[]any{math.NaN(), math.Inf(1)}, `["nan","inf"]`},
	}
	for _, c := range cases {
		got, err := json.Marshal(toJSON(c.in))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("toJSON(%s) = %s, want %s", compat.PyRepr(c.in), got, c.want)
		}
	}
}

// gdirty's own worker keys become columns only when some worker has them.
func TestStatusTableExtraColumns(t *testing.T) {
	w1 := compat.NewDict("pid", int64(10), "age", int64(1), "apps", []any{"m:A"}, "booted", true, "last_heartbeat", 0.5,
		"devices", []any{"0", "1"}, "requests", int64(7), "retiring", "max_memory")
	w2 := compat.NewDict("pid", int64(11), "age", int64(2), "apps", []any{"m:A"}, "booted", false, "last_heartbeat", 0.25,
		"devices", []any{"2", "3"}, "requests", int64(0))
	var b strings.Builder
	if err := printStatus(&b, compat.NewDict("arbiter_pid", int64(1), "workers", []any{w1, w2}, "worker_count", int64(2), "apps", []any{"m:A"})); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"PID", "AGE", "BOOTED", "HEARTBEAT", "DEVICES", "REQUESTS", "RETIRING", "APPS"},
		{"10", "1", "yes", "0.50s", "ago", "0,1", "7", "max_memory", "m:A"},
		{"11", "2", "no", "0.25s", "ago", "2,3", "0", "-", "m:A"},
	}
	for i, w := range want {
		if got := strings.Fields(lines[3+i]); !reflect.DeepEqual(got, w) {
			t.Errorf("line %d: %q, want %q", i, got, w)
		}
	}

	b.Reset()
	plain := compat.NewDict("pid", int64(10), "age", int64(1), "apps", []any{"m:A"}, "booted", true, "last_heartbeat", 0.5)
	if err := printStatus(&b, compat.NewDict("arbiter_pid", int64(1), "workers", []any{plain}, "worker_count", int64(1), "apps", []any{"m:A"})); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(strings.Split(b.String(), "\n")[3]); !reflect.DeepEqual(got, []string{"PID", "AGE", "BOOTED", "HEARTBEAT", "APPS"}) {
		t.Errorf("plain header %q", got)
	}
}
