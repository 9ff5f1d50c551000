package main

import (
	"encoding/json"
	"math"
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
