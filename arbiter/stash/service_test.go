package stash

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gdirty/gdirty/compat"
)

// ---------------------------------------------------------------------------
// gunicorn's own arbiter, replayed (testdata/golden/stash_vectors.json)
// ---------------------------------------------------------------------------

type stashVectors struct {
	GunicornVersion string `json:"gunicorn_version"`
	Steps           []struct {
		Name       string  `json:"name"`
		PayloadHex string  `json:"payload_hex"`
		Deviation  *string `json:"deviation"`
		Gunicorn   answer  `json:"gunicorn"`
		Expect     answer  `json:"expect"`
	} `json:"steps"`
}

type answer struct {
	Type       string `json:"type"`
	PayloadHex string `json:"payload_hex"`
}

// The whole session gunicorn's handle_stash_request answered, replayed in
// order on one Service: every answer must be byte-identical to gunicorn's,
// except the documented deviations, where it must be exactly what the
// generator derived from gunicorn's answer.
func TestGunicornSessionGolden(t *testing.T) { replayGolden(t, NewService(NewMemory(0))) }

// replayGolden replays gunicorn's session on s (every Backend must pass).
func replayGolden(t *testing.T, s *Service) {
	data, err := os.ReadFile("../../testdata/golden/stash_vectors.json")
	if err != nil {
		t.Fatalf("read golden file (regenerate with testdata/golden/gen_stash_vectors.py): %v", err)
	}
	var v stashVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Steps) < 200 {
		t.Fatalf("only %d steps", len(v.Steps))
	}
	deviations := map[string]int{}
	for i, st := range v.Steps {
		payload := mustHex(t, st.PayloadHex)
		want := mustHex(t, st.Expect.PayloadHex)
		resp, derr := s.Handle(payload)
		var got []byte
		gotType := "response"
		if derr != nil {
			gotType, got = "error", derr.Payload()
		} else {
			got = resp
		}
		if gotType != st.Expect.Type || !bytes.Equal(got, want) {
			t.Fatalf("step %d %q: got %s %s, want %s %s (gunicorn: %s %s)", i+1, st.Name,
				gotType, show(got), st.Expect.Type, show(want), st.Gunicorn.Type, show(mustHex(t, st.Gunicorn.PayloadHex)))
		}
		if st.Deviation != nil {
			deviations[*st.Deviation]++
		} else if st.Gunicorn != st.Expect {
			t.Fatalf("step %q: vector differs from gunicorn without a deviation", st.Name)
		}
	}
	if deviations["error-type"] == 0 || deviations["error-dict-value"] == 0 || len(deviations) != 2 {
		t.Fatalf("unexpected deviations: %v", deviations)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func show(b []byte) string {
	v, err := compat.Decode(b)
	if err != nil {
		return fmt.Sprintf("<%x: %v>", b, err)
	}
	return compat.PyRepr(v)
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

type absent struct{}

// req builds a STASH payload from alternating field, value pairs.
func req(t testing.TB, kv ...any) []byte {
	t.Helper()
	d := &compat.Dict{}
	for i := 0; i+1 < len(kv); i += 2 {
		if _, skip := kv[i+1].(absent); skip {
			continue
		}
		d.Set(kv[i].(string), kv[i+1])
	}
	b, err := compat.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do runs one request and returns the decoded result or the error.
func do(t testing.TB, s *Service, kv ...any) (any, *compat.DirtyError) {
	t.Helper()
	resp, derr := s.Handle(req(t, kv...))
	if derr != nil {
		return nil, derr
	}
	v, err := compat.Decode(resp)
	if err != nil {
		t.Fatalf("answer is not valid TLV: %v", err)
	}
	d, ok := v.(*compat.Dict)
	if !ok || d.Len() != 1 || d.Keys[0] != "result" {
		t.Fatalf("answer %s is not {\"result\": ...}", compat.PyRepr(v))
	}
	return d.Values[0], nil
}

func ok(t testing.TB, s *Service, kv ...any) any {
	t.Helper()
	v, derr := do(t, s, kv...)
	if derr != nil {
		t.Fatalf("%v: unexpected error %v", kv, derr)
	}
	return v
}

func fails(t testing.TB, s *Service, wantType, wantMsg string, kv ...any) *compat.DirtyError {
	t.Helper()
	v, derr := do(t, s, kv...)
	if derr == nil {
		t.Fatalf("%v: got result %s, want %s", kv, compat.PyRepr(v), wantType)
	}
	if derr.Type != wantType || (wantMsg != "" && derr.Message != wantMsg) {
		t.Fatalf("%v: got %s: %q, want %s: %q", kv, derr.Type, derr.Message, wantType, wantMsg)
	}
	return derr
}

func eq(t testing.TB, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s, want %s", compat.PyRepr(got), compat.PyRepr(want))
	}
}

func memSvc() *Service { return NewService(NewMemory(0)) }

// ---------------------------------------------------------------------------
// operations
// ---------------------------------------------------------------------------

func TestOperations(t *testing.T) { testOperations(t, memSvc) }

// testOperations runs against any Backend (newSvc makes a fresh one).
func testOperations(t *testing.T, newSvc func() *Service) {
	type step struct {
		kv      []any
		want    any    // result, when errType is empty
		errType string // expected error_type
		errMsg  string
	}
	T := true
	F := false
	cases := []struct {
		name  string
		steps []step
	}{
		{"put auto-creates and get reads", []step{
			{kv: []any{"op", OpPut, "table", "s", "key", "k", "value", "v"}, want: T},
			{kv: []any{"op", OpGet, "table", "s", "key", "k"}, want: "v"},
			{kv: []any{"op", OpTables, "table", ""}, want: []any{"s"}},
		}},
		{"get missing", []step{
			{kv: []any{"op", OpGet, "table", "nope", "key", "k"}, errType: TypeKeyNotFound, errMsg: "Key not found: k"},
			{kv: []any{"op", OpEnsure, "table", "s"}, want: T},
			{kv: []any{"op", OpGet, "table", "s", "key", []byte("k")}, errType: TypeKeyNotFound, errMsg: "Key not found: b'k'"},
		}},
		{"delete returns bool", []step{
			{kv: []any{"op", OpDelete, "table", "s", "key", "k"}, want: F},
			{kv: []any{"op", OpPut, "table", "s", "key", "k", "value", 1}, want: T},
			{kv: []any{"op", OpDelete, "table", "s", "key", "k"}, want: T},
			{kv: []any{"op", OpDelete, "table", "s", "key", "k"}, want: F},
		}},
		{"keys, clear, info", []step{
			{kv: []any{"op", OpKeys, "table", "s"}, want: []any{}},
			{kv: []any{"op", OpPut, "table", "s", "key", "a", "value", 1}, want: T},
			{kv: []any{"op", OpPut, "table", "s", "key", "b", "value", 2}, want: T},
			{kv: []any{"op", OpKeys, "table", "s"}, want: []any{"a", "b"}},
			{kv: []any{"op", OpInfo, "table", "s"}, want: compat.NewDict("size", int64(2), "table", "s")},
			{kv: []any{"op", OpClear, "table", "s"}, want: T},
			{kv: []any{"op", OpInfo, "table", "s"}, want: compat.NewDict("size", int64(0), "table", "s")},
			{kv: []any{"op", OpClear, "table", "missing"}, want: T},
			{kv: []any{"op", OpInfo, "table", "missing"}, errType: TypeTableNotFound, errMsg: "Table not found: missing"},
			{kv: []any{"op", OpTables, "table", ""}, want: []any{"s"}},
		}},
		{"ensure, exists, delete_table", []step{
			{kv: []any{"op", OpExists, "table", "s"}, want: F},
			{kv: []any{"op", OpEnsure, "table", "s"}, want: T},
			{kv: []any{"op", OpEnsure, "table", "s"}, want: T},
			{kv: []any{"op", OpExists, "table", "s"}, want: T},
			{kv: []any{"op", OpExists, "table", "s", "key", nil}, want: T},
			{kv: []any{"op", OpExists, "table", "s", "key", "k"}, want: F},
			{kv: []any{"op", OpPut, "table", "s", "key", "k", "value", absent{}}, want: T},
			{kv: []any{"op", OpExists, "table", "s", "key", "k"}, want: T},
			{kv: []any{"op", OpGet, "table", "s", "key", "k"}, want: nil},
			{kv: []any{"op", OpDeleteTable, "table", "s"}, want: T},
			{kv: []any{"op", OpDeleteTable, "table", "s"}, want: F},
			{kv: []any{"op", OpExists, "table", "s"}, want: F},
			{kv: []any{"op", OpTables}, want: []any{}},
		}},
		{"unknown and odd ops", []step{
			{kv: []any{"table", "s"}, errType: "DirtyError", errMsg: "Unknown stash operation: None"},
			{kv: []any{"op", 0, "table", "s"}, errType: "DirtyError", errMsg: "Unknown stash operation: 0"},
			{kv: []any{"op", 11}, errType: "DirtyError", errMsg: "Unknown stash operation: 11"},
			{kv: []any{"op", "9"}, errType: "DirtyError", errMsg: "Unknown stash operation: 9"},
			{kv: []any{"op", 9.5}, errType: "DirtyError", errMsg: "Unknown stash operation: 9.5"},
			{kv: []any{"op", true, "table", "s", "key", "k", "value", "v"}, want: T}, // True == 1: put
			{kv: []any{"op", 2.0, "table", "s", "key", "k"}, want: "v"},
			{kv: []any{"op", 9.0}, want: []any{"s"}},
		}},
		{"unhashable", []step{
			{kv: []any{"op", OpPut, "table", []any{1}, "key", "k", "value", "v"}, errType: "DirtyError", errMsg: "unhashable type: 'list'"},
			{kv: []any{"op", OpTables}, want: []any{}},
			{kv: []any{"op", OpPut, "table", "s", "key", compat.NewDict(), "value", "v"}, errType: "DirtyError", errMsg: "unhashable type: 'dict'"},
			{kv: []any{"op", OpTables}, want: []any{"s"}}, // gunicorn creates the table first
			{kv: []any{"op", OpGet, "table", "missing", "key", []any{}}, errType: TypeKeyNotFound, errMsg: "Key not found: []"},
			{kv: []any{"op", OpGet, "table", "s", "key", []any{}}, errType: "DirtyError", errMsg: "unhashable type: 'list'"},
			{kv: []any{"op", OpDelete, "table", "missing", "key", []any{}}, want: F},
			{kv: []any{"op", OpExists, "table", "s", "key", []any{}}, errType: "DirtyError", errMsg: "unhashable type: 'list'"},
		}},
		{"patterns", []step{
			{kv: []any{"op", OpPut, "table", "p", "key", "user:1", "value", 1}, want: T},
			{kv: []any{"op", OpPut, "table", "p", "key", "user:22", "value", 1}, want: T},
			{kv: []any{"op", OpPut, "table", "p", "key", "a/b/c", "value", 1}, want: T},
			{kv: []any{"op", OpPut, "table", "p", "key", int64(7), "value", 1}, want: T},
			{kv: []any{"op", OpPut, "table", "p", "key", []byte("x"), "value", 1}, want: T},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", "user:*"}, want: []any{"user:1", "user:22"}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", "user:?"}, want: []any{"user:1"}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", "a*c"}, want: []any{"a/b/c"}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", "[!u]*"}, want: []any{"a/b/c", int64(7), []byte("x")}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", "[0-9]"}, want: []any{int64(7)}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", "b'?'"}, want: []any{[]byte("x")}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", ""}, want: []any{"user:1", "user:22", "a/b/c", int64(7), []byte("x")}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", 0}, want: []any{"user:1", "user:22", "a/b/c", int64(7), []byte("x")}},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", 3}, errType: "DirtyError", errMsg: "expected str, bytes or os.PathLike object, not int"},
			{kv: []any{"op", OpKeys, "table", "p", "pattern", []byte("u*")}, errType: "DirtyError", errMsg: "cannot use a bytes pattern on a string-like object"},
			{kv: []any{"op", OpKeys, "table", "none", "pattern", 3}, want: []any{}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSvc()
			for i, st := range c.steps {
				if st.errType != "" {
					fails(t, s, st.errType, st.errMsg, st.kv...)
					continue
				}
				got := ok(t, s, st.kv...)
				if !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d %v: got %s, want %s", i, st.kv, compat.PyRepr(got), compat.PyRepr(st.want))
				}
			}
		})
	}
}

// Python dict ordering: insertion order; replacing keeps the position;
// delete + re-add moves the key to the end. Same for tables.
func TestOrdering(t *testing.T) { testOrdering(t, memSvc) }

// testOrdering runs against any Backend (newSvc makes a fresh one).
func testOrdering(t *testing.T, newSvc func() *Service) {
	s := newSvc()
	for _, k := range []string{"c", "a", "b", "d"} {
		ok(t, s, "op", OpPut, "table", "o", "key", k, "value", k)
	}
	ok(t, s, "op", OpPut, "table", "o", "key", "a", "value", "A") // stays second
	ok(t, s, "op", OpDelete, "table", "o", "key", "c")
	ok(t, s, "op", OpPut, "table", "o", "key", "c", "value", "C") // moves to the end
	eq(t, ok(t, s, "op", OpKeys, "table", "o"), []any{"a", "b", "d", "c"})
	eq(t, ok(t, s, "op", OpGet, "table", "o", "key", "a"), "A")

	for _, n := range []string{"z", "y", "x"} {
		ok(t, s, "op", OpEnsure, "table", n)
	}
	ok(t, s, "op", OpPut, "table", "z", "key", 1, "value", 1)
	ok(t, s, "op", OpDeleteTable, "table", "y")
	ok(t, s, "op", OpEnsure, "table", "y")
	eq(t, ok(t, s, "op", OpTables), []any{"o", "z", "x", "y"})

	// Many deletions (tombstone compaction) keep the order intact.
	for i := 0; i < 500; i++ {
		ok(t, s, "op", OpPut, "table", "big", "key", int64(i), "value", int64(i))
	}
	for i := 0; i < 500; i += 3 {
		ok(t, s, "op", OpDelete, "table", "big", "key", int64(i))
	}
	ok(t, s, "op", OpPut, "table", "big", "key", int64(0), "value", int64(0))
	var want []any
	for i := 0; i < 500; i++ {
		if i%3 != 0 {
			want = append(want, int64(i))
		}
	}
	want = append(want, int64(0))
	eq(t, ok(t, s, "op", OpKeys, "table", "big"), want)
	eq(t, ok(t, s, "op", OpInfo, "table", "big"), compat.NewDict("size", int64(len(want)), "table", "big"))
}

// Key identity is Python's: 1 == 1.0 == True, 0 == -0.0 == False, NaN is
// never found, str != bytes, the first key object stays.
func TestKeyIdentity(t *testing.T) { testKeyIdentity(t, memSvc) }

// testKeyIdentity runs against any Backend (newSvc makes a fresh one).
func testKeyIdentity(t *testing.T, newSvc func() *Service) {
	s := newSvc()
	ok(t, s, "op", OpPut, "table", "k", "key", int64(1), "value", "int")
	ok(t, s, "op", OpPut, "table", "k", "key", true, "value", "bool")
	ok(t, s, "op", OpPut, "table", "k", "key", 1.0, "value", "float")
	eq(t, ok(t, s, "op", OpKeys, "table", "k"), []any{int64(1)})
	eq(t, ok(t, s, "op", OpGet, "table", "k", "key", true), "float")

	ok(t, s, "op", OpPut, "table", "k", "key", math.Copysign(0, -1), "value", "negzero")
	ok(t, s, "op", OpPut, "table", "k", "key", false, "value", "false")
	ok(t, s, "op", OpPut, "table", "k", "key", int64(0), "value", "zero")
	keys := ok(t, s, "op", OpKeys, "table", "k").([]any)
	if len(keys) != 2 || math.Float64bits(keys[1].(float64)) != math.Float64bits(math.Copysign(0, -1)) {
		t.Fatalf("keys = %s, want [1, -0.0]", compat.PyRepr(keys))
	}

	ok(t, s, "op", OpPut, "table", "k", "key", "1", "value", "str")
	ok(t, s, "op", OpPut, "table", "k", "key", []byte("1"), "value", "bytes")
	ok(t, s, "op", OpPut, "table", "k", "key", 1.5, "value", "1.5")
	ok(t, s, "op", OpPut, "table", "k", "key", nil, "value", "none")
	eq(t, ok(t, s, "op", OpGet, "table", "k", "key", "1"), "str")
	eq(t, ok(t, s, "op", OpGet, "table", "k", "key", []byte("1")), "bytes")
	eq(t, ok(t, s, "op", OpGet, "table", "k", "key", 1.5), "1.5")
	eq(t, ok(t, s, "op", OpGet, "table", "k", "key", absent{}), "none")

	// int64 vs float beyond 2**53: exact comparison, as Python does.
	ok(t, s, "op", OpPut, "table", "big", "key", int64(1<<53+1), "value", "int")
	fails(t, s, TypeKeyNotFound, "Key not found: 9007199254740992.0", "op", OpGet, "table", "big", "key", float64(1<<53))
	ok(t, s, "op", OpPut, "table", "big", "key", math.MaxInt64, "value", "max")
	fails(t, s, TypeKeyNotFound, "", "op", OpGet, "table", "big", "key", float64(math.MaxInt64)) // 2**63 as float
	ok(t, s, "op", OpPut, "table", "big", "key", float64(math.MinInt64), "value", "min")
	eq(t, ok(t, s, "op", OpGet, "table", "big", "key", int64(math.MinInt64)), "min")

	nan := math.NaN()
	ok(t, s, "op", OpPut, "table", "n", "key", nan, "value", 1)
	ok(t, s, "op", OpPut, "table", "n", "key", nan, "value", 2)
	eq(t, ok(t, s, "op", OpInfo, "table", "n"), compat.NewDict("size", int64(2), "table", "n"))
	fails(t, s, TypeKeyNotFound, "Key not found: nan", "op", OpGet, "table", "n", "key", nan)
	eq(t, ok(t, s, "op", OpExists, "table", "n", "key", nan), false)
	eq(t, ok(t, s, "op", OpDelete, "table", "n", "key", nan), false)

	// Tables follow the same rules.
	ok(t, s, "op", OpEnsure, "table", int64(1))
	ok(t, s, "op", OpPut, "table", true, "key", "x", "value", "y")
	eq(t, ok(t, s, "op", OpInfo, "table", 1.0), compat.NewDict("size", int64(1), "table", 1.0))
}

// Keys and values are stored and returned as the exact bytes received,
// even encodings a Python round trip would normalise.
func TestByteIdentical(t *testing.T) { testByteIdentical(t, memSvc) }

// testByteIdentical runs against any Backend (newSvc makes a fresh one).
func testByteIdentical(t *testing.T, newSvc func() *Service) {
	s := newSvc()
	odd := [][]byte{
		{compat.TypeBool, 0x02},                               // True, non-canonical byte
		{compat.TypeFloat64, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0x01}, // NaN with a payload
		{compat.TypeDict, 0, 0, 0, 2, compat.TypeString, 0, 0, 0, 1, 'a', compat.TypeNone, compat.TypeString, 0, 0, 0, 1, 'a', compat.TypeInt64, 0, 0, 0, 0, 0, 0, 0, 1}, // duplicate key
		append([]byte{compat.TypeBytes, 0, 0, 0x10, 0}, bytes.Repeat([]byte{0xab}, 0x1000)...),
	}
	for i, raw := range odd {
		p := rawPayload(t, "op", enc(t, int64(OpPut)), "table", enc(t, "b"), "key", enc(t, int64(i)), "value", raw)
		if _, derr := s.Handle(p); derr != nil {
			t.Fatal(derr)
		}
		resp, derr := s.Handle(rawPayload(t, "op", enc(t, int64(OpGet)), "table", enc(t, "b"), "key", enc(t, int64(i))))
		if derr != nil {
			t.Fatal(derr)
		}
		if want := append(append([]byte(nil), resultHeader...), raw...); !bytes.Equal(resp, want) {
			t.Fatalf("value %d: got %x, want %x", i, resp, want)
		}
	}
	// The key too: first encoding kept, returned as sent.
	p := rawPayload(t, "op", enc(t, int64(OpPut)), "table", enc(t, "kk"), "key", []byte{compat.TypeBool, 0x07}, "value", enc(t, "v"))
	if _, derr := s.Handle(p); derr != nil {
		t.Fatal(derr)
	}
	resp, _ := s.Handle(rawPayload(t, "op", enc(t, int64(OpKeys)), "table", enc(t, "kk")))
	want := append(append([]byte(nil), resultHeader...), compat.TypeList, 0, 0, 0, 1, compat.TypeBool, 0x07)
	if !bytes.Equal(resp, want) {
		t.Fatalf("keys: got %x, want %x", resp, want)
	}
	// A repeated payload field: the last one wins, as in Python.
	p = rawPayload(t, "op", enc(t, int64(OpGet)), "table", enc(t, "zz"), "table", enc(t, "kk"), "key", enc(t, int64(1)))
	if v, derr := s.Handle(p); derr != nil || show(v) != "{'result': 'v'}" {
		t.Fatalf("repeated field: %s %v", show(v), derr)
	}
}

func enc(t testing.TB, v any) []byte {
	b, err := compat.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawPayload builds a dict payload from field names and raw TLV values.
func rawPayload(t testing.TB, kv ...any) []byte {
	out := []byte{compat.TypeDict, 0, 0, 0, byte(len(kv) / 2)}
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, enc(t, kv[i].(string))...)
		out = append(out, kv[i+1].([]byte)...)
	}
	return out
}

func TestBadPayloads(t *testing.T) { testBadPayloads(t, memSvc) }

// testBadPayloads runs against any Backend (newSvc makes a fresh one).
func testBadPayloads(t *testing.T, newSvc func() *Service) {
	s := newSvc()
	for _, p := range [][]byte{nil, {compat.TypeList, 0, 0, 0, 0}, {compat.TypeDict, 0, 0, 0, 1}, {0xff}} {
		_, derr := s.Handle(p)
		if derr == nil || derr.Type != "DirtyProtocolError" {
			t.Fatalf("payload %x: %v, want DirtyProtocolError", p, derr)
		}
	}
}

func TestDeclaredTables(t *testing.T) {
	m := NewMemory(0)
	if err := EnsureTables(m, "sessions", "cache", "sessions"); err != nil {
		t.Fatal(err)
	}
	s := NewService(m)
	eq(t, ok(t, s, "op", OpTables), []any{"sessions", "cache"})
	eq(t, ok(t, s, "op", OpInfo, "table", "cache"), compat.NewDict("size", int64(0), "table", "cache"))
}

// ---------------------------------------------------------------------------
// memory bound
// ---------------------------------------------------------------------------

func TestMemoryBound(t *testing.T) {
	const max = 4096
	m := NewMemory(max)
	s := NewService(m)
	ok(t, s, "op", OpPut, "table", "m", "key", "a", "value", strings.Repeat("x", 1000))
	used, _ := m.Usage()
	want := tableCost(string(enc(t, "m"))) + entryCost(string(enc(t, "a")), string(enc(t, strings.Repeat("x", 1000))))
	if used != want {
		t.Fatalf("used = %d, want %d", used, want)
	}

	// A put that does not fit is refused and changes nothing.
	derr := fails(t, s, TypeStashError, "", "op", OpPut, "table", "m", "key", "b", "value", strings.Repeat("y", 4000))
	if !strings.Contains(derr.Message, "Stash memory limit exceeded") || !strings.Contains(derr.Message, "--stash-max-bytes") {
		t.Fatalf("message %q", derr.Message)
	}
	if v, _ := derr.Details.Get("max_bytes"); v != int64(max) {
		t.Fatalf("details %s", compat.PyRepr(derr.Details))
	}
	eq(t, ok(t, s, "op", OpKeys, "table", "m"), []any{"a"})
	// Growing an existing value past the bound keeps the old value.
	fails(t, s, TypeStashError, "", "op", OpPut, "table", "m", "key", "a", "value", strings.Repeat("z", 4000))
	eq(t, ok(t, s, "op", OpGet, "table", "m", "key", "a"), strings.Repeat("x", 1000))
	// A new table that does not fit is not created, by put or ensure.
	fails(t, s, TypeStashError, "", "op", OpPut, "table", "n", "key", "b", "value", strings.Repeat("y", 3000))
	eq(t, ok(t, s, "op", OpTables), []any{"m"})
	if u, _ := m.Usage(); u != used {
		t.Fatalf("used changed to %d after refused puts", u)
	}
	// Shrinking always works; freed space is reusable.
	ok(t, s, "op", OpPut, "table", "m", "key", "a", "value", "small")
	ok(t, s, "op", OpPut, "table", "m", "key", "b", "value", strings.Repeat("y", 2000))
	ok(t, s, "op", OpDelete, "table", "m", "key", "b")
	ok(t, s, "op", OpClear, "table", "m")
	ok(t, s, "op", OpDeleteTable, "table", "m")
	if u, _ := m.Usage(); u != 0 {
		t.Fatalf("used = %d after deleting everything, want 0", u)
	}
	for i := 0; ; i++ {
		_, derr := do(t, s, "op", OpPut, "table", "fill", "key", int64(i), "value", int64(i))
		if derr != nil {
			if derr.Type != TypeStashError {
				t.Fatal(derr)
			}
			break
		}
		if i > max {
			t.Fatal("bound never reached")
		}
	}
	if u, _ := m.Usage(); u > max {
		t.Fatalf("used %d > max %d", u, max)
	}
	// Unbounded when 0.
	s = NewService(NewMemory(0))
	ok(t, s, "op", OpPut, "table", "m", "key", "a", "value", strings.Repeat("x", 1<<20))
}

// Usage never drifts: after a random workload, recomputing the cost of
// what is stored gives the same number.
func TestAccountingConsistent(t *testing.T) {
	m := NewMemory(0)
	s := NewService(m)
	for i := 0; i < 3000; i++ {
		tbl := fmt.Sprintf("t%d", i%7)
		key := int64(i * 7919 % 101)
		switch i % 9 {
		case 0, 1, 2, 3:
			ok(t, s, "op", OpPut, "table", tbl, "key", key, "value", strings.Repeat("v", i%50))
		case 4:
			ok(t, s, "op", OpDelete, "table", tbl, "key", key)
		case 5:
			if i%45 == 5 {
				ok(t, s, "op", OpClear, "table", tbl)
			}
		case 6:
			if i%63 == 6 {
				ok(t, s, "op", OpDeleteTable, "table", tbl)
			}
		case 7:
			ok(t, s, "op", OpPut, "table", tbl, "key", float64(key), "value", "f")
		case 8:
			ok(t, s, "op", OpEnsure, "table", tbl)
		}
	}
	var want int64
	m.mu.RLock()
	for _, ts := range m.tables.items {
		if ts.gone {
			continue
		}
		want += tableCost(ts.key)
		for _, e := range ts.val.entries.items {
			if !e.gone {
				want += entryCost(e.key, e.val)
			}
		}
	}
	m.mu.RUnlock()
	if used, _ := m.Usage(); used != want {
		t.Fatalf("used = %d, recomputed %d", used, want)
	}
}

// ---------------------------------------------------------------------------
// concurrency
// ---------------------------------------------------------------------------

func TestConcurrent(t *testing.T) {
	s := NewService(NewMemory(1 << 20))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			tbl := fmt.Sprintf("t%d", g%3)
			for i := 0; i < 300; i++ {
				key := int64(i % 17)
				for _, kv := range [][]any{
					{"op", OpPut, "table", tbl, "key", key, "value", strings.Repeat("x", i%64)},
					{"op", OpGet, "table", tbl, "key", key},
					{"op", OpKeys, "table", tbl, "pattern", "1*"},
					{"op", OpInfo, "table", tbl},
					{"op", OpExists, "table", tbl, "key", key},
					{"op", OpTables},
				} {
					if _, derr := s.Handle(req(t, kv...)); derr != nil && derr.Type != TypeKeyNotFound && derr.Type != TypeTableNotFound {
						t.Error(derr)
						return
					}
				}
				if i%50 == 0 {
					s.Handle(req(t, "op", OpDelete, "table", tbl, "key", key))
					s.Handle(req(t, "op", OpClear, "table", tbl))
				}
				if i%120 == 0 {
					s.Handle(req(t, "op", OpDeleteTable, "table", tbl))
				}
			}
		}(g)
	}
	wg.Wait()
}

// ---------------------------------------------------------------------------
// fuzzing
// ---------------------------------------------------------------------------

// Any payload: no panic, and every answer is a valid {"result": ...} dict
// or an error dict that encodes.
func FuzzHandle(f *testing.F) {
	data, err := os.ReadFile("../../testdata/golden/stash_vectors.json")
	if err == nil {
		var v stashVectors
		if json.Unmarshal(data, &v) == nil {
			for _, st := range v.Steps {
				if b, err := hex.DecodeString(st.PayloadHex); err == nil {
					f.Add(b)
				}
			}
		}
	}
	s := NewService(NewMemory(1 << 20))
	f.Fuzz(func(t *testing.T, payload []byte) {
		resp, derr := s.Handle(payload)
		if derr != nil {
			if _, err := compat.Decode(derr.Payload()); err != nil {
				t.Fatalf("error payload does not decode: %v", err)
			}
			return
		}
		v, err := compat.Decode(resp)
		if err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		if d, ok := v.(*compat.Dict); !ok || d.Len() != 1 || d.Keys[0] != "result" {
			t.Fatalf("answer %s", compat.PyRepr(v))
		}
	})
}
