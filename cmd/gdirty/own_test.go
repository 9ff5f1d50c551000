package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gdirty/gdirty/worker"
)

func TestAsBytes(t *testing.T) {
	good := map[any]int64{
		int64(1024): 1024, json.Number("5"): 5, "0": 0, "512MB": 512e6, "2GiB": 2 << 30,
		"1.5 KiB": 1536, "3b": 3, "10 kb": 10000, "1TiB": 1 << 40,
	}
	for in, want := range good {
		got, err := asBytes(in)
		if err != nil || got != want {
			t.Errorf("asBytes(%#v) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []any{"2G", "abc", "-5", int64(-1), true, "1e3MB", "99999999999TiB", json.Number("1.5"), []any{}} {
		if _, err := asBytes(in); err == nil {
			t.Errorf("asBytes(%#v) accepted", in)
		}
	}
	if _, err := asBytes("2G"); err == nil || !strings.Contains(err.Error(), "GiB") {
		t.Errorf("ambiguous unit error %v does not say which units exist", err)
	}
}

func TestAsSecondsAndDevices(t *testing.T) {
	for in, want := range map[any]time.Duration{int64(3): 3 * time.Second, 1.5: 1500 * time.Millisecond,
		json.Number("0.25"): 250 * time.Millisecond, "90s": 90 * time.Second, "2": 2 * time.Second} {
		if got, err := asSeconds(in); err != nil || got != want {
			t.Errorf("asSeconds(%#v) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []any{"soon", int64(-1), false, "-3s"} {
		if _, err := asSeconds(in); err == nil {
			t.Errorf("asSeconds(%#v) accepted", in)
		}
	}
	devs := map[string]any{
		"0,1,2":   []any{"0", int64(1), json.Number("2")},
		"0,1,2,3": int64(4),
		"a,b":     "a, b",
		"0,1":     "2",
	}
	for want, in := range devs {
		got, err := asDevices(in)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("asDevices(%#v) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []any{[]any{}, int64(0), int64(1 << 40), []any{true}, []any{[]any{"0"}}, 1.5, []any{int64(-1)}} {
		if _, err := asDevices(in); err == nil {
			t.Errorf("asDevices(%#v) accepted", in)
		}
	}
}

func where(prefix string) func(string) string {
	return func(k string) string { return prefix + k }
}

func TestParseOwnPriorityAndErrors(t *testing.T) {
	flags := layer{values: map[string]any{"max_requests": "7"}, where: where("--")}
	tomlL := layer{values: map[string]any{"max_requests": int64(9), "worker_ttl": int64(60)}, where: where("toml:")}
	conf := layer{values: map[string]any{"max_requests": json.Number("11"), "worker_ttl": json.Number("5"),
		"worker_idle_ttl": json.Number("2.5"), "max_worker_memory": "1GiB", "max_requests_jitter": json.Number("3"),
		"devices": []any{"0", "1", "2", "3"}, "devices_per_worker": json.Number("2")}, where: where("conf:")}
	own, err := parseOwn(ownSources{flags, tomlL, conf}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := worker.RecyclePolicy{MaxRequests: 7, MaxRequestsJitter: 3, MaxMemory: 1 << 30, TTL: time.Minute, IdleTTL: 2500 * time.Millisecond}
	if own.Recycle != want {
		t.Fatalf("policy %+v, want %+v", own.Recycle, want)
	}
	wantPlan := &worker.DevicePlan{IDs: []string{"0", "1", "2", "3"}, PerWorker: 2, Env: "CUDA_VISIBLE_DEVICES"}
	if !reflect.DeepEqual(own.Devices, wantPlan) {
		t.Fatalf("plan %+v", own.Devices)
	}

	bad := []struct {
		values  map[string]any
		workers int
		env     map[string]string
		want    string
	}{
		{map[string]any{"max_requests": "ten"}, 1, nil, `conf:max_requests = "ten": must be a whole number >= 0`},
		{map[string]any{"max_requests": true}, 1, nil, `conf:max_requests = true: must be a whole number >= 0`},
		{map[string]any{"max_worker_memory": "2G"}, 1, nil, `conf:max_worker_memory = "2G": unknown unit "G"`},
		{map[string]any{"worker_ttl": int64(-1)}, 1, nil, `conf:worker_ttl = -1: must be >= 0 seconds`},
		{map[string]any{"devices": int64(2)}, 3, nil, `conf:devices: 3 workers x 1 device(s) each need 3 devices, only 2 given (0,1)`},
		{map[string]any{"devices": int64(2), "devices_per_worker": int64(3)}, 1, nil, `conf:devices_per_worker = 3: must be a whole number from 1 to the 2 devices given`},
		{map[string]any{"devices_env": "HIP_VISIBLE_DEVICES"}, 1, nil, `conf:devices_env = "HIP_VISIBLE_DEVICES": needs devices to be set too`},
		{map[string]any{"devices": int64(2), "devices_env": "A-B"}, 1, nil, `devices_env "A-B" is not an environment variable name`},
		{map[string]any{"devices": int64(2), "devices_shared": "maybe"}, 1, nil, `conf:devices_shared = "maybe": must be true or false`},
		{map[string]any{"devices": int64(1)}, 1, map[string]string{"CUDA_VISIBLE_DEVICES": "0"}, `env/raw_env sets CUDA_VISIBLE_DEVICES`},
	}
	for _, c := range bad {
		_, err := parseOwn(ownSources{{values: c.values, where: where("conf:")}}, c.workers, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line containing %q", c.values, err, c.want)
		}
		if _, usage := err.(*usageError); err != nil && !usage {
			t.Errorf("%v: %T is not a usage error (exit status 2)", c.values, err)
		}
	}

	shared, err := parseOwn(ownSources{{values: map[string]any{"devices": int64(2), "devices_shared": true}, where: where("conf:")}}, 5, nil)
	if err != nil || !shared.Devices.Shared {
		t.Fatalf("shared devices: %+v, %v", shared, err)
	}
}

func TestConfValuesWarnsOnUnknownNames(t *testing.T) {
	vals, warnings, err := confValues(map[string]json.RawMessage{
		"gdirty_max_requests": json.RawMessage(`12345678901234567890`),
		"gdirty_max_request":  json.RawMessage(`5`),
	}, "gunicorn.conf.py")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "gdirty_max_request ") {
		t.Fatalf("warnings %q", warnings)
	}
	// Beyond int64: kept exact, refused when parsed.
	_, err = parseOwn(ownSources{{values: vals, where: where("conf:")}}, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "12345678901234567890") {
		t.Fatalf("huge max_requests: %v", err)
	}
}

// Setting values come from users' files and flags: any text is parsed or
// refused with an error, never a panic or an allocation it names.
func FuzzOwnValues(f *testing.F) {
	for _, s := range []string{"2GiB", "1.5 KiB", "0,1,2", "4", "90s", "1e308", "99999999999999999999", "-0", " , "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := asBytes(s); err == nil && n < 0 {
			t.Fatalf("asBytes(%q) = %d", s, n)
		}
		if d, err := asSeconds(s); err == nil && d < 0 {
			t.Fatalf("asSeconds(%q) = %s", s, d)
		}
		if ids, err := asDevices(s); err == nil && (len(ids) == 0 || len(ids) > maxDevices) {
			t.Fatalf("asDevices(%q) gave %d ids", s, len(ids))
		}
		_, _ = asBool(s)
		_, _ = asInt(s)
	})
}
