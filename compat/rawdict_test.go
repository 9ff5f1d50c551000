package compat

import (
	"bytes"
	"testing"
)

func TestRangeDict(t *testing.T) {
	payload, err := Encode(NewDict("op", int64(1), "table", "t", "value", []any{"x", NewDict("a", nil)}))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var raws [][]byte
	if err := RangeDict(payload, func(k string, v []byte) {
		keys = append(keys, k)
		raws = append(raws, v)
	}); err != nil {
		t.Fatal(err)
	}
	want := []any{int64(1), "t", []any{"x", NewDict("a", nil)}}
	if len(keys) != 3 || keys[0] != "op" || keys[1] != "table" || keys[2] != "value" {
		t.Fatalf("keys %q", keys)
	}
	for i, w := range want {
		enc, _ := Encode(w)
		if !bytes.Equal(raws[i], enc) {
			t.Fatalf("entry %d: raw %x, want %x", i, raws[i], enc)
		}
	}
	for _, bad := range [][]byte{nil, {TypeList, 0, 0, 0, 0}, {TypeDict, 0, 0, 0, 1}, {TypeDict, 0, 0, 0, 0, 0}} {
		if err := RangeDict(bad, func(string, []byte) {}); err == nil {
			t.Fatalf("RangeDict(%x) accepted", bad)
		}
	}
	if err := RangeDict([]byte{TypeList, 0, 0, 0, 0}, func(string, []byte) {}); !IsKind(err, KindMissingField) {
		t.Fatalf("list payload: %v, want KindMissingField", err)
	}
}

// RangeDict accepts exactly the payloads Decode turns into a dict, and its
// entries, read last-one-wins, are that dict.
func FuzzRangeDict(f *testing.F) {
	seed, _ := Encode(NewDict("op", int64(1), "table", "t", "key", []byte("k")))
	f.Add(seed)
	f.Add([]byte{TypeDict, 0, 0, 0, 2, TypeString, 0, 0, 0, 1, 'a', TypeNone, TypeString, 0, 0, 0, 1, 'a', TypeBool, 1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		got := &Dict{}
		err := RangeDict(payload, func(k string, raw []byte) {
			v, derr := Decode(raw)
			if derr != nil {
				t.Fatalf("entry %q: raw value does not decode: %v", k, derr)
			}
			got.Set(k, v)
		})
		v, derr := Decode(payload)
		d, isDict := v.(*Dict)
		if (err == nil) != (derr == nil && isDict) {
			t.Fatalf("RangeDict err %v, Decode err %v (dict %v)", err, derr, isDict)
		}
		if err == nil && PyRepr(got) != PyRepr(d) {
			t.Fatalf("entries %s, Decode %s", PyRepr(got), PyRepr(d))
		}
	})
}
