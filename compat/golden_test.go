package compat

// Helpers shared by the golden-vector tests. The vectors in
// ../testdata/golden are produced by gunicorn's own encoder
// (testdata/golden/gen_vectors.py); nothing expected here is hand-written.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

const goldenDir = "../testdata/golden"

// tagged is the JSON form of a Python value shared with gen_vectors.py.
type tagged struct {
	T         string          `json:"t"`
	V         json.RawMessage `json:"v,omitempty"`
	Bits      string          `json:"bits,omitempty"`
	Repr      string          `json:"repr,omitempty"`
	Hex       *string         `json:"hex,omitempty"`
	RepeatHex *string         `json:"repeat_hex,omitempty"`
	Repeat    *string         `json:"repeat,omitempty"`
	Count     int             `json:"count,omitempty"`
}

type goldenMeta struct {
	Generator       string `json:"generator"`
	GunicornVersion string `json:"gunicorn_version"`
	Constants       struct {
		HeaderSize     int `json:"header_size"`
		MaxMessageSize int `json:"max_message_size"`
		MaxStringSize  int `json:"max_string_size"`
		MaxBytesSize   int `json:"max_bytes_size"`
		MaxListSize    int `json:"max_list_size"`
		MaxDictSize    int `json:"max_dict_size"`
	} `json:"constants"`
}

type tlvCase struct {
	Name    string `json:"name"`
	Input   tagged `json:"input"`
	Decoded tagged `json:"decoded"`
	Hex     string `json:"hex"`
}

type tlvFile struct {
	goldenMeta
	Cases        []tlvCase `json:"cases"`
	EncodeErrors []struct {
		Name    string `json:"name"`
		What    string `json:"what"`
		Size    int    `json:"size"`
		Message string `json:"message"`
	} `json:"encode_errors"`
}

type frameCase struct {
	Name     string  `json:"name"`
	Builder  string  `json:"builder"`
	Type     uint8   `json:"type"`
	TypeName string  `json:"type_name"`
	ID       uint64  `json:"id"`
	Length   uint32  `json:"length"`
	Decoded  tagged  `json:"decoded"`
	Hex      string  `json:"hex"`
	AppPath  *string `json:"app_path"`
	Action   *string `json:"action"`
	Result   *tagged `json:"result"`
	Go       *struct {
		Fn   string `json:"fn"`
		Args []any  `json:"args"`
	} `json:"go"`
	ErrorDict *tagged `json:"error_dict"`
}

type malformedCase struct {
	Name     string            `json:"name"`
	Kind     string            `json:"kind"`
	Category string            `json:"category"`
	Hex      string            `json:"hex"`
	Error    string            `json:"error"`
	Message  *string           `json:"message"`
	Details  map[string]string `json:"details"`
}

type frameFile struct {
	goldenMeta
	Frames      []frameCase     `json:"frames"`
	Malformed   []malformedCase `json:"malformed"`
	InvalidUTF8 [][2]string     `json:"invalid_utf8"`
}

var (
	tlvOnce, frameOnce sync.Once
	tlvGolden          tlvFile
	frameGolden        frameFile
)

func loadGolden(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatalf("read golden file (regenerate with testdata/golden/gen_vectors.py): %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

func loadTLV(t testing.TB) *tlvFile {
	tlvOnce.Do(func() { loadGolden(t, "tlv_vectors.json", &tlvGolden) })
	if len(tlvGolden.Cases) == 0 {
		t.Fatal("no TLV vectors loaded")
	}
	return &tlvGolden
}

func loadFrames(t testing.TB) *frameFile {
	frameOnce.Do(func() { loadGolden(t, "frame_vectors.json", &frameGolden) })
	if len(frameGolden.Frames) == 0 {
		t.Fatal("no frame vectors loaded")
	}
	return &frameGolden
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in golden file: %v", err)
	}
	return b
}

// build turns a tagged value into the Go model of a TLV value. Dict keys
// that are not strings (possible in encoder inputs) become PyStr(key), which
// is what gunicorn's encoder does with str(key). Dict entries are appended
// without de-duplication, exactly as gunicorn iterates dict.items().
func build(tv tagged) (any, error) {
	switch tv.T {
	case "none":
		return nil, nil
	case "bool":
		var b bool
		err := json.Unmarshal(tv.V, &b)
		return b, err
	case "int":
		var s string
		if err := json.Unmarshal(tv.V, &s); err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
	case "float":
		bits, err := strconv.ParseUint(tv.Bits, 16, 64)
		return math.Float64frombits(bits), err
	case "bytes":
		switch {
		case tv.Hex != nil:
			return hex.DecodeString(*tv.Hex)
		case tv.RepeatHex != nil:
			unit, err := hex.DecodeString(*tv.RepeatHex)
			return bytes.Repeat(unit, tv.Count), err
		}
		return nil, fmt.Errorf("bytes without hex")
	case "str":
		if tv.Repeat != nil {
			return repeatString(*tv.Repeat, tv.Count), nil
		}
		var s string
		err := json.Unmarshal(tv.V, &s)
		return s, err
	case "list", "tuple":
		var items []tagged
		if err := json.Unmarshal(tv.V, &items); err != nil {
			return nil, err
		}
		out := make([]any, 0, len(items))
		for _, it := range items {
			v, err := build(it)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "dict":
		var pairs [][2]tagged
		if err := json.Unmarshal(tv.V, &pairs); err != nil {
			return nil, err
		}
		d := &Dict{}
		for _, p := range pairs {
			k, err := build(p[0])
			if err != nil {
				return nil, err
			}
			v, err := build(p[1])
			if err != nil {
				return nil, err
			}
			d.Keys = append(d.Keys, PyStr(k))
			d.Values = append(d.Values, v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown tag %q", tv.T)
}

func repeatString(unit string, n int) string {
	var b bytes.Buffer
	b.Grow(len(unit) * n)
	for i := 0; i < n; i++ {
		b.WriteString(unit)
	}
	return b.String()
}

func mustBuild(t testing.TB, tv tagged) any {
	t.Helper()
	v, err := build(tv)
	if err != nil {
		t.Fatalf("build tagged value: %v", err)
	}
	return v
}

// valueDiff compares two TLV values strictly (types must match, floats by
// bit pattern so NaN payloads and -0.0 count, dict order matters) and
// describes the first difference, or returns "".
func valueDiff(path string, got, want any) string {
	switch w := want.(type) {
	case nil:
		if got != nil {
			return fmt.Sprintf("%s: got %T %s, want None", path, got, short(got))
		}
		return ""
	case bool, int64, string:
		if got != want {
			return fmt.Sprintf("%s: got %T %s, want %T %s", path, got, short(got), want, short(want))
		}
		return ""
	case float64:
		g, ok := got.(float64)
		if !ok || math.Float64bits(g) != math.Float64bits(w) {
			return fmt.Sprintf("%s: got %T %s, want float %016x (%s)", path, got, short(got), math.Float64bits(w), PyFloatRepr(w))
		}
		return ""
	case []byte:
		g, ok := got.([]byte)
		if !ok || !bytes.Equal(g, w) {
			return fmt.Sprintf("%s: got %T %s, want bytes %s", path, got, short(got), short(want))
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: got %T, want list", path, got)
		}
		if len(g) != len(w) {
			return fmt.Sprintf("%s: got %d items, want %d", path, len(g), len(w))
		}
		for i := range w {
			if d := valueDiff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	case *Dict:
		g, ok := got.(*Dict)
		if !ok {
			return fmt.Sprintf("%s: got %T, want dict", path, got)
		}
		if g.Len() != w.Len() {
			return fmt.Sprintf("%s: got %d keys, want %d", path, g.Len(), w.Len())
		}
		for i := range w.Keys {
			if g.Keys[i] != w.Keys[i] {
				return fmt.Sprintf("%s: key %d is %q, want %q", path, i, g.Keys[i], w.Keys[i])
			}
			if d := valueDiff(fmt.Sprintf("%s[%q]", path, w.Keys[i]), g.Values[i], w.Values[i]); d != "" {
				return d
			}
		}
		return ""
	}
	return fmt.Sprintf("%s: unexpected want type %T", path, want)
}

func short(v any) string {
	s := PyRepr(v)
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// wantProtoErr checks err is a *ProtocolError with the given message (and
// kind, when kind != 0).
func wantProtoErr(t testing.TB, what string, err error, kind ErrorKind, message string) *ProtocolError {
	t.Helper()
	pe, ok := err.(*ProtocolError)
	if !ok {
		t.Errorf("%s: got error %v (%T), want *ProtocolError %q", what, err, err, message)
		return nil
	}
	if pe.Message != message {
		t.Errorf("%s: message\n got: %q\nwant: %q (gunicorn)", what, pe.Message, message)
	}
	if kind != 0 && pe.Kind != kind {
		t.Errorf("%s: kind %v, want %v", what, pe.Kind, kind)
	}
	return pe
}

func TestGoldenMetadata(t *testing.T) {
	tf := loadTLV(t)
	ff := loadFrames(t)
	for _, m := range []goldenMeta{tf.goldenMeta, ff.goldenMeta} {
		if m.GunicornVersion == "" {
			t.Error("golden file does not record gunicorn_version")
		}
		c := m.Constants
		checks := []struct {
			name      string
			got, want int
		}{
			{"HeaderSize", HeaderSize, c.HeaderSize},
			{"MaxMessageSize", MaxMessageSize, c.MaxMessageSize},
			{"MaxStringSize", MaxStringSize, c.MaxStringSize},
			{"MaxBytesSize", MaxBytesSize, c.MaxBytesSize},
			{"MaxListSize", MaxListSize, c.MaxListSize},
			{"MaxDictSize", MaxDictSize, c.MaxDictSize},
		}
		for _, ck := range checks {
			if ck.got != ck.want {
				t.Errorf("%s = %d, gunicorn %s has %d", ck.name, ck.got, m.GunicornVersion, ck.want)
			}
		}
	}
	t.Logf("golden vectors from gunicorn %s", tf.GunicornVersion)
}
