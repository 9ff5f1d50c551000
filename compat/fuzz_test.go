package compat

// Fuzz targets, seeded from gunicorn's golden vectors. Run one with e.g.
//
//	go test ./compat -run '^$' -fuzz '^FuzzDecode$' -fuzztime 30s
//
// Any crasher the fuzzer saves under testdata/fuzz/ is replayed by plain
// `go test` from then on.

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

const maxSeed = 64 << 10 // keep the big vectors out of the corpus

// seedAll adds every golden frame, TLV payload and malformed input, plus
// the TLV payloads of the frames.
func seedAll(f *testing.F, payloadsOnly bool) {
	add := func(b []byte) {
		if len(b) <= maxSeed {
			f.Add(b)
		}
	}
	for _, c := range loadFrames(f).Frames {
		b := mustHex(f, c.Hex)
		if payloadsOnly {
			add(b[HeaderSize:])
		} else {
			add(b)
		}
	}
	for _, c := range loadFrames(f).Malformed {
		add(mustHex(f, c.Hex))
	}
	for _, c := range loadTLV(f).Cases {
		add(mustHex(f, c.Hex))
	}
	// Requests with repeated keys, which gunicorn's encoder can emit
	// ({1: x, "1": y}) and where routing must follow the last occurrence.
	for _, kv := range [][]any{
		{"app_path", "a:A", "app_path", "b:B", "action", "x", "action", "y"},
		{"app_path", "a:A", "action", "x", "app_path", "b:B"},
		{"action", "x", "app_path", "a:B", "args", []any{int64(1)}, "kwargs", NewDict("app_path", "n:N")},
	} {
		add(withDupKeys(f, kv...))
	}
	for i, c := range loadFrames(f).InvalidUTF8 {
		if i%500 == 0 {
			s := mustHex(f, c[0])
			add(append([]byte{TypeString, 0, 0, 0, byte(len(s))}, s...))
		}
	}
}

func asProtoErr(t *testing.T, what string, err error) *ProtocolError {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe != err {
		t.Fatalf("%s: error %v (%T) is not a *ProtocolError", what, err, err)
	}
	if pe.Message == "" || pe.Kind.String() == "" || len(pe.Raw) > maxRaw {
		t.Fatalf("%s: malformed ProtocolError %+v", what, pe)
	}
	return pe
}

func FuzzParseHeader(f *testing.F) {
	seedAll(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			pe := asProtoErr(t, "ParseHeader", err)
			if len(data) < HeaderSize && pe.Kind != KindTruncated {
				t.Fatalf("short header reported as %v", pe.Kind)
			}
			return
		}
		if len(data) < HeaderSize || !h.Type.Known() || h.Length > MaxMessageSize {
			t.Fatalf("accepted invalid header %x as %+v", data, h)
		}
		if got := AppendHeader(nil, h); !bytes.Equal(got, data[:HeaderSize]) {
			t.Fatalf("AppendHeader(ParseHeader(%x)) = %x", data[:HeaderSize], got)
		}
		if mOK, vOK, raw := RawHeader(data); !mOK || !vOK || raw != h {
			t.Fatalf("RawHeader disagrees: %v %v %+v", mOK, vOK, raw)
		}
	})
}

type frameResult struct {
	h       Header
	payload []byte
	err     string
}

func readAll(t *testing.T, r io.Reader) []frameResult {
	var out []frameResult
	var buf []byte
	for {
		h, p, err := ReadFrame(r, buf)
		if err == io.EOF {
			return out
		}
		if err != nil {
			pe := asProtoErr(t, "ReadFrame", err)
			return append(out, frameResult{h: h, err: pe.Message})
		}
		if int(h.Length) != len(p) {
			t.Fatalf("header says %d bytes, payload has %d", h.Length, len(p))
		}
		out = append(out, frameResult{h: h, payload: append([]byte(nil), p...)})
		buf = p[:0]
	}
}

func FuzzReadFrame(f *testing.F) {
	seedAll(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := readAll(t, bytes.NewReader(data))
		// Frames that were read re-encode to exactly the bytes consumed.
		off := 0
		for _, fr := range whole {
			if fr.err != "" {
				break
			}
			enc := AppendFrame(nil, fr.h.Type, fr.h.ID, fr.payload)
			if !bytes.HasPrefix(data[off:], enc) {
				t.Fatalf("frame at %d does not re-encode to its bytes", off)
			}
			off += len(enc)
		}
		if len(whole) == 0 || whole[len(whole)-1].err == "" {
			if off != len(data) {
				t.Fatalf("clean EOF with %d bytes unread", len(data)-off)
			}
		}
		// Short reads change nothing.
		half := readAll(t, iotest.HalfReader(bytes.NewReader(data)))
		if len(half) != len(whole) {
			t.Fatalf("HalfReader read %d results, plain reader %d", len(half), len(whole))
		}
		for i := range whole {
			if half[i].h != whole[i].h || half[i].err != whole[i].err || !bytes.Equal(half[i].payload, whole[i].payload) {
				t.Fatalf("result %d differs with short reads: %+v vs %+v", i, half[i], whole[i])
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	seedAll(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		verr := Validate(data)
		if err != nil {
			pe := asProtoErr(t, "Decode", err)
			vpe := asProtoErr(t, "Validate", verr)
			if vpe.Kind != pe.Kind || vpe.Message != pe.Message {
				t.Fatalf("Validate %v and Decode %v disagree", verr, err)
			}
			assertScanAgreesWithDecode(t, data)
			return
		}
		if verr != nil {
			t.Fatalf("Decode accepted, Validate: %v", verr)
		}
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("Encode(Decode(x)): %v", err)
		}
		v2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))): %v", err)
		}
		if d := valueDiff("v", v2, v); d != "" {
			t.Fatalf("re-decoded value differs: %s", d)
		}
		if enc2, _ := Encode(v2); !bytes.Equal(enc2, enc) {
			t.Fatal("Encode is not stable across a round trip")
		}
		_ = PyRepr(v) // must not panic on any decodable value
		assertScanAgreesWithDecode(t, data)
	})
}

func FuzzScanRequest(f *testing.F) {
	seedAll(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		rr, err := ScanRequest(data)
		if err != nil {
			asProtoErr(t, "ScanRequest", err)
		} else if !bytes.Contains(data, []byte(rr.AppPath)) {
			t.Fatalf("app_path %q not in the payload", rr.AppPath)
		}
		assertScanAgreesWithDecode(t, data)
	})
}
