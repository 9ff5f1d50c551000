package compat

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// streamScan runs a StreamScan over payload delivered byte by byte (or in
// one go), with tiny pieces so that every boundary is exercised.
func streamScan(payload []byte, oneByte bool, pieceSize int) (RequestRoute, []byte, string, bool, error) {
	var src = bytes.NewReader(payload)
	var rd = bufio.NewReaderSize(src, 64)
	if oneByte {
		rd = bufio.NewReaderSize(iotest.OneByteReader(src), 64)
	}
	var emitted []byte
	s := NewStreamScan(rd, len(payload), pieceSize, func(p []byte) error {
		if len(p) > pieceSize {
			panic("piece over size")
		}
		emitted = append(emitted, p...)
		return nil
	})
	rr, err := s.Scan()
	if err == nil {
		if ferr := s.Finish(); ferr != nil {
			panic(ferr)
		}
	}
	early, known := s.EarlyRoute()
	if rest, _ := rd.Peek(1); len(rest) != 0 {
		panic("payload not consumed to its end")
	}
	return rr, emitted, early, known, err
}

// sameAsWhole checks StreamScan against ScanRequest on the whole payload.
func sameAsWhole(t *testing.T, payload []byte) {
	t.Helper()
	want, wantErr := ScanRequest(payload)
	for _, mode := range []struct {
		oneByte bool
		piece   int
	}{{false, 1 << 16}, {true, 7}, {false, 1}} {
		got, emitted, early, known, err := streamScan(payload, mode.oneByte, mode.piece)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%x (mode %+v): stream error %v, whole error %v", payload, mode, err, wantErr)
		}
		if err != nil {
			var a, b *ProtocolError
			if !errors.As(err, &a) || !errors.As(wantErr, &b) {
				t.Fatalf("%x: non-protocol errors %v / %v", payload, err, wantErr)
			}
			if a.Kind != b.Kind || a.Message != b.Message || !bytes.Equal(a.Raw, b.Raw) || (a.Raw == nil) != (b.Raw == nil) {
				t.Fatalf("%x (mode %+v):\nstream %v %q raw %x\nwhole  %v %q raw %x", payload, mode, a.Kind, a.Message, a.Raw, b.Kind, b.Message, b.Raw)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%x: stream route %+v, whole %+v", payload, got, want)
		}
		if !bytes.Equal(emitted, payload) {
			t.Fatalf("%x: emitted %x", payload, emitted)
		}
		if known && !want.AppIsString && early != "" {
			t.Fatalf("early route %q for a non-str final app_path", early)
		}
	}
}

// rawStrReq is {"app_path": "a:A", "args": [s]} with s's bytes as they
// are (Go's encoder refuses invalid UTF-8).
func rawStrReq(s string) []byte {
	b := []byte{TypeDict, 0, 0, 0, 2, TypeString, 0, 0, 0, 8}
	b = append(b, "app_path"...)
	b = append(b, TypeString, 0, 0, 0, 3, 'a', ':', 'A', TypeString, 0, 0, 0, 4)
	b = append(b, "args"...)
	b = append(b, TypeList, 0, 0, 0, 1, TypeString, byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

func req(t *testing.T, kv ...any) []byte {
	t.Helper()
	return withDupKeys(t, kv...)
}

func TestStreamScanMatchesScanRequest(t *testing.T) {
	bigStr := strings.Repeat("é", 40000)             // 2-byte runes across every boundary
	bigStr3 := strings.Repeat("€x", 30000)           // 3-byte runes
	bigStr4 := strings.Repeat("\U0001F600ab", 20000) // 4-byte runes
	good := [][]byte{
		req(t, "app_path", "a:A", "action", "run", "args", []any{bigStr}, "kwargs", NewDict()),
		req(t, "app_path", "a:A", "args", []any{[]byte(strings.Repeat("z", 100000)), bigStr3, bigStr4}),
		req(t, "action", "x", "app_path", "b:B"),
		req(t, "app_path", "a:A", "app_path", "b:B"),
		req(t, "app_path", int64(3)),
		req(t, "app_path", ""),
		req(t, "app_path", []any{"x", int64(1)}),
	}
	for _, p := range good {
		sameAsWhole(t, p)
	}
	bad := [][]byte{
		{},
		{TypeList, 0, 0, 0, 0},
		{TypeList, 0, 0, 0, 0, 9},
		{TypeDict, 0, 0, 0, 1},
		{TypeDict, 0, 0, 0, 1, TypeInt64, 0, 0, 0, 0, 0, 0, 0, 1, TypeNone},
		{TypeDict, 0, 0, 0, 1, 0x77},
		{TypeDict, 0, 0, 0, 0, 1, 2, 3},
		{TypeDict, 0, 0, 0},
		{TypeDict, 0xff, 0xff, 0xff, 0xff},
		{TypeDict, 0, 0, 0, 1, TypeString, 0, 0, 0, 3, 'a'},
		{TypeString, 0xff, 0xff, 0xff, 0xff},
		req(t, "action", "x"),
		req(t, "app_path", nil),
		req(t, "app_path", "a:A", "app_path", nil),
	}
	// Invalid UTF-8 deep inside a long string, at and around run boundaries,
	// and cut off at the very end.
	for _, tail := range []string{"\xff", "\xe2\x82", "\xe2\x28\xa1", "\xf0\x9f\x98", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
		for _, pad := range []int{0, 1, 62, 63, 64, 65, 1000} {
			s := strings.Repeat("a", pad) + tail
			bad = append(bad, rawStrReq(s), rawStrReq(s+"tail"), rawStrReq(s+"\xc3\xa9"+tail))
		}
	}
	p := req(t, "app_path", "a:A", "args", []any{bigStr})
	bad = append(bad, p[:len(p)-3], append(append([]byte(nil), p...), 1, 2))
	deep := []byte{TypeDict, 0, 0, 0, 1, TypeString, 0, 0, 0, 1, 'k'}
	for i := 0; i < MaxDepth+1; i++ {
		deep = append(deep, TypeList, 0, 0, 0, 1)
	}
	bad = append(bad, append(deep, TypeNone))
	for _, b := range bad {
		sameAsWhole(t, b)
	}
}

func TestStreamScanEarlyRouteIsTheFirstAppPath(t *testing.T) {
	p := req(t, "app_path", "a:A", "args", []any{strings.Repeat("x", 5000)}, "app_path", "b:B")
	got, _, early, known, err := streamScan(p, true, 64)
	if err != nil || !known || early != "a:A" || got.AppPath != "b:B" {
		t.Fatalf("early %q (%v), final %+v, err %v", early, known, got, err)
	}
	p = req(t, "app_path", int64(1), "action", "x")
	if _, _, _, known, _ := streamScan(p, false, 64); known {
		t.Fatal("a non-str app_path must not give an early route")
	}
}

func TestStreamScanTruncatedClientIsAReadError(t *testing.T) {
	p := req(t, "app_path", "a:A", "args", []any{strings.Repeat("x", 500)})
	rd := bufio.NewReaderSize(bytes.NewReader(p[:100]), 64)
	s := NewStreamScan(rd, len(p), 32, func([]byte) error { return nil })
	_, err := s.Scan()
	var re *StreamReadError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a StreamReadError", err)
	}
}

func FuzzStreamScan(f *testing.F) {
	seedAll(f, true)
	f.Fuzz(func(t *testing.T, payload []byte) {
		sameAsWhole(t, payload)
	})
}
