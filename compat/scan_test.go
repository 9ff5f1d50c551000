package compat

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"testing"
)

// ScanRequest on every gunicorn-built REQUEST payload returns its app_path
// and action; on every other dict payload it agrees with Decode that there
// is no app_path.
func TestScanRequestGolden(t *testing.T) {
	requests := 0
	for _, c := range loadFrames(t).Frames {
		payload := mustHex(t, c.Hex)[HeaderSize:]
		if MsgType(c.Type) != MsgRequest {
			if len(payload) == 0 {
				continue
			}
			if _, err := ScanRequest(payload); !IsKind(err, KindMissingField) {
				t.Errorf("%s: ScanRequest on a %s payload: %v, want KindMissingField", c.Name, c.TypeName, err)
			}
			continue
		}
		requests++
		if c.AppPath == nil || c.Action == nil {
			t.Fatalf("%s: request vector lacks app_path/action", c.Name)
		}
		rr, err := ScanRequest(payload)
		if err != nil {
			t.Fatalf("%s: ScanRequest: %v", c.Name, err)
		}
		if rr.AppPath != *c.AppPath || rr.Action != *c.Action {
			t.Errorf("%s: ScanRequest = %+v, want app_path %q action %q", c.Name, rr, *c.AppPath, *c.Action)
		}
		assertScanAgreesWithDecode(t, payload)
	}
	if requests < 10 {
		t.Fatalf("only %d request vectors", requests)
	}
}

// assertScanAgreesWithDecode checks ScanRequest against the full decoder:
// same success, same error message for malformed input, and the routing
// fields of the dict the worker will decode.
func assertScanAgreesWithDecode(t testing.TB, payload []byte) {
	t.Helper()
	rr, scanErr := ScanRequest(payload)
	v, decErr := Decode(payload)
	if decErr != nil {
		if scanErr == nil {
			t.Fatalf("ScanRequest accepted %x, Decode: %v", payload, decErr)
		}
		if len(payload) > 0 && payload[0] == TypeDict && scanErr.Error() != decErr.Error() {
			t.Fatalf("ScanRequest error %q, Decode error %q for %x", scanErr, decErr, payload)
		}
		return
	}
	d, isDict := v.(*Dict)
	if !isDict {
		if !IsKind(scanErr, KindMissingField) {
			t.Fatalf("non-dict payload %x: ScanRequest %v, want KindMissingField", payload, scanErr)
		}
		return
	}
	app, ok := d.Get("app_path")
	if !ok || app == nil {
		if !IsKind(scanErr, KindMissingField) {
			t.Fatalf("dict without app_path (%s): ScanRequest %+v, %v", short(app), rr, scanErr)
		}
		return
	}
	if scanErr != nil {
		t.Fatalf("ScanRequest: %v, Decode found app_path %s", scanErr, short(app))
	}
	appStr, isStr := app.(string)
	if rr.AppIsString != isStr || rr.AppPath != appStr || (!isStr && !reflect.DeepEqual(rr.AppValue, app) && !bytesEqualNaN(rr.AppValue, app)) {
		t.Fatalf("ScanRequest = %+v, decoded dict has app_path %s", rr, short(app))
	}
	action, _ := d.Get("action")
	actionStr, _ := action.(string)
	if rr.Action != actionStr {
		t.Fatalf("ScanRequest = %+v, decoded dict has action %s", rr, short(action))
	}
}

// bytesEqualNaN compares decoded values whose only difference may be NaN
// (NaN != NaN for DeepEqual): equal TLV encodings mean equal values.
func bytesEqualNaN(a, b any) bool {
	ea, errA := Encode(a)
	eb, errB := Encode(b)
	return errA == nil && errB == nil && bytes.Equal(ea, eb)
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withDupKeys encodes a dict whose keys may repeat (as gunicorn's encoder
// can produce from {1: ..., "1": ...}).
func withDupKeys(t testing.TB, kv ...any) []byte {
	d := &Dict{}
	for i := 0; i < len(kv); i += 2 {
		d.Keys = append(d.Keys, kv[i].(string))
		d.Values = append(d.Values, kv[i+1])
	}
	return mustEncode(t, d)
}

func TestScanRequestErrors(t *testing.T) {
	valid := mustEncode(t, NewDict("app_path", "a:B", "action", "run", "args", []any{}, "kwargs", NewDict()))
	cases := []struct {
		name    string
		payload []byte
		kind    ErrorKind
		message string
	}{
		{"empty", nil, KindMissingField, "Request payload is empty"},
		{"missing app_path", mustEncode(t, NewDict("action", "run")), KindMissingField, "Request is missing app_path"},
		{"empty dict", mustEncode(t, NewDict()), KindMissingField, "Request is missing app_path"},
		{"app_path None", mustEncode(t, NewDict("app_path", nil)), KindMissingField, "Request is missing app_path"},
		{"payload list", mustEncode(t, []any{"a:B"}), KindMissingField, "Request payload must be a dict, got list"},
		{"payload str", mustEncode(t, "a:B"), KindMissingField, "Request payload must be a dict, got str"},
		{"payload None", mustEncode(t, nil), KindMissingField, "Request payload must be a dict, got NoneType"},
		{"payload int", mustEncode(t, int64(3)), KindMissingField, "Request payload must be a dict, got int"},
		{"trailing", append(append([]byte{}, valid...), 0), KindTrailingData, "Trailing data after TLV: 1 bytes"},
		{"trailing many", append(append([]byte{}, valid...), valid...), KindTrailingData, "Trailing data after TLV: " + strconv.Itoa(len(valid)) + " bytes"},
		{"truncated", valid[:len(valid)-1], KindTruncated, "Truncated TLV data: incomplete dict count"},
		{"bad list payload", []byte{TypeList, 0, 0, 0, 1}, KindTruncated, "Truncated TLV data: no type byte"},
		{"dict count only", withDupKeys(t, "app_path", "a:B")[:5], KindTruncated, "Truncated TLV data: no type byte"},
		{"non-string key", []byte{TypeDict, 0, 0, 0, 1, TypeNone, TypeNone}, KindNonStringKey, "Dict key must be string, got NoneType"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rr, err := ScanRequest(c.payload)
			wantProtoErr(t, "ScanRequest", err, c.kind, c.message)
			_ = rr
			assertScanAgreesWithDecode(t, c.payload)
		})
	}
}

func TestScanRequestFields(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		want    RequestRoute
	}{
		{"no action", mustEncode(t, NewDict("app_path", "a:B")), RequestRoute{AppPath: "a:B", AppIsString: true}},
		{"action not a string", mustEncode(t, NewDict("app_path", "a:B", "action", int64(5))), RequestRoute{AppPath: "a:B", AppIsString: true}},
		{"app_path last", mustEncode(t, NewDict("action", "x", "z", []any{NewDict("app_path", "nested:N")}, "app_path", "a:B")), RequestRoute{AppPath: "a:B", AppIsString: true, Action: "x"}},
		{"unicode", mustEncode(t, NewDict("app_path", "caf\u00e9:\u00c9", "action", "\U0001f600")), RequestRoute{AppPath: "caf\u00e9:\u00c9", AppIsString: true, Action: "\U0001f600"}},
		{"empty strings", mustEncode(t, NewDict("app_path", "", "action", "")), RequestRoute{AppIsString: true}},
		// Duplicate keys: gunicorn (and the worker the payload is forwarded
		// to) decode a dict where the last occurrence wins; routing must
		// use the same value.
		{"dup app_path strings", withDupKeys(t, "app_path", "a:A", "app_path", "b:B"), RequestRoute{AppPath: "b:B", AppIsString: true}},
		{"dup app_path int then string", withDupKeys(t, "app_path", int64(1), "app_path", "b:B"), RequestRoute{AppPath: "b:B", AppIsString: true}},
		{"dup action", withDupKeys(t, "app_path", "a:B", "action", "first", "action", "second"), RequestRoute{AppPath: "a:B", AppIsString: true, Action: "second"}},
		{"dup action string then int", withDupKeys(t, "app_path", "a:B", "action", "first", "action", int64(2)), RequestRoute{AppPath: "a:B", AppIsString: true}},
		// gunicorn's arbiter routes a non-str app_path like any value.
		{"app_path int", mustEncode(t, NewDict("app_path", int64(1))), RequestRoute{AppValue: int64(1)}},
		{"app_path bytes", mustEncode(t, NewDict("app_path", []byte("a:B"))), RequestRoute{AppValue: []byte("a:B")}},
		{"app_path list", mustEncode(t, NewDict("app_path", []any{"a:B"})), RequestRoute{AppValue: []any{"a:B"}}},
		{"app_path dict", mustEncode(t, NewDict("app_path", NewDict())), RequestRoute{AppValue: &Dict{Keys: []string{}, Values: []any{}}}},
		{"dup app_path string then int", withDupKeys(t, "app_path", "a:B", "app_path", int64(1)), RequestRoute{AppValue: int64(1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rr, err := ScanRequest(c.payload)
			if err != nil {
				t.Fatalf("ScanRequest: %v", err)
			}
			if !reflect.DeepEqual(rr, c.want) {
				t.Fatalf("ScanRequest = %+v, want %+v", rr, c.want)
			}
			assertScanAgreesWithDecode(t, c.payload)
		})
	}
}

func TestRequestRouteAnyWorker(t *testing.T) {
	cases := []struct {
		route RequestRoute
		want  bool
	}{
		{RequestRoute{AppPath: "a:B", AppIsString: true}, false},
		{RequestRoute{AppIsString: true}, true},
		{RequestRoute{AppValue: int64(0)}, true},
		{RequestRoute{AppValue: false}, true},
		{RequestRoute{AppValue: []byte{}}, true},
		{RequestRoute{AppValue: []any{}}, true},
		{RequestRoute{AppValue: int64(5)}, false},
		{RequestRoute{AppValue: math.NaN()}, false},
		{RequestRoute{AppValue: []any{nil}}, false},
	}
	for _, c := range cases {
		if got := c.route.AnyWorker(); got != c.want {
			t.Errorf("%+v.AnyWorker() = %v, want %v", c.route, got, c.want)
		}
	}
}

// ScanRequest validates everything, so a malformed value after app_path is
// still reported, with gunicorn's message.
func TestScanRequestValidatesWholePayload(t *testing.T) {
	good := mustEncode(t, NewDict("app_path", "a:B", "args", []any{"x"}))
	bad := bytes.Replace(good, []byte{TypeString, 0, 0, 0, 1, 'x'}, []byte{TypeString, 0, 0, 0, 1, 0xff}, 1)
	if bytes.Equal(bad, good) {
		t.Fatal("test setup: replacement failed")
	}
	_, err := ScanRequest(bad)
	wantProtoErr(t, "ScanRequest", err, KindInvalidUTF8,
		"Invalid UTF-8 in string: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte")
	assertScanAgreesWithDecode(t, bad)

	// And a non-string app_path followed by malformed data reports the
	// malformed data, like gunicorn, which decodes everything first.
	p := withDupKeys(t, "app_path", int64(1), "x", "y")
	p = p[:len(p)-1]
	_, err = ScanRequest(p)
	wantProtoErr(t, "ScanRequest", err, KindTruncated, "Truncated TLV data: expected 1 bytes for string, got 0")
	assertScanAgreesWithDecode(t, p)
}

func TestScanRequestDoesNotAllocateForValidation(t *testing.T) {
	payload := mustEncode(t, NewDict("app_path", "a:B", "action", "run",
		"args", []any{"text", int64(3), 2.5, nil, true, []byte{0, 1}},
		"kwargs", NewDict("k", NewDict("deep", []any{int64(1), int64(2)}))))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := ScanRequest(payload); err != nil {
			t.Fatal(err)
		}
	})
	// Only the two returned strings may be allocated.
	if allocs > 2 {
		t.Fatalf("ScanRequest allocates %.0f times per call, want <= 2", allocs)
	}
}
