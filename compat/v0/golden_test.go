package v0

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gdirty/gdirty/compat"
)

// The vectors come from gunicorn 25.0.3's own encoder and error classes
// (testdata/golden/gen_v0_vectors.py); nothing here is hand-written.
type goldenFile struct {
	GunicornVersion string `json:"gunicorn_version"`
	MaxMessageSize  int    `json:"max_message_size"`
	Frames          []struct {
		Name    string  `json:"name"`
		Hex     string  `json:"hex"`
		ID      string  `json:"id"`
		AppPath *string `json:"app_path"`
		Action  *string `json:"action"`
	} `json:"frames"`
	IDs []struct {
		BodyHex string `json:"body_hex"`
		ID      string `json:"id"`
	} `json:"ids"`
	Invalid []struct {
		BodyHex string            `json:"body_hex"`
		Message string            `json:"message"`
		Details map[string]string `json:"details"`
	} `json:"invalid"`
	Floats []struct {
		Bits string `json:"bits"`
		JSON string `json:"json"`
	} `json:"floats"`
	Errors []struct {
		ID   string `json:"id"`
		Ctor string `json:"ctor"`
		Args []any  `json:"args"`
		Hex  string `json:"hex"`
	} `json:"errors"`
}

func loadGolden(t testing.TB) *goldenFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "golden", "v0_vectors.json"))
	if err != nil {
		t.Fatalf("read golden vectors: %v", err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("parse golden vectors: %v", err)
	}
	if !strings.HasPrefix(g.GunicornVersion, "25.0.") || len(g.Frames) == 0 {
		t.Fatalf("golden vectors not from gunicorn 25.0.x: %q", g.GunicornVersion)
	}
	return &g
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

func TestGoldenConstants(t *testing.T) {
	if g := loadGolden(t); g.MaxMessageSize != MaxMessageSize {
		t.Fatalf("MaxMessageSize %d, gunicorn's %d", MaxMessageSize, g.MaxMessageSize)
	}
}

// gunicorn 25.0.3 encodes -> Go reads: every message its client, arbiter
// and worker write is framed, validated and scanned, and the id and
// app_path Go reads re-encode to exactly gunicorn's json.dumps of them.
func TestGoldenFramesRead(t *testing.T) {
	for _, c := range loadGolden(t).Frames {
		frame := unhex(t, c.Hex)
		body, err := ReadFrame(bytes.NewReader(frame), nil)
		if err != nil {
			t.Fatalf("%s: ReadFrame: %v", c.Name, err)
		}
		req, err := ScanRequest(body)
		if err != nil {
			t.Fatalf("%s: ScanRequest: %v", c.Name, err)
		}
		if !bytes.Equal(req.Body, body) {
			t.Errorf("%s: body changed", c.Name)
		}
		if got := mustEncode(t, req.ID); got != c.ID {
			t.Errorf("%s: id %s, gunicorn %s", c.Name, got, c.ID)
		}
		if c.AppPath != nil {
			app := req.Route.AppValue
			if req.Route.AppIsString {
				app = req.Route.AppPath
			}
			if got := mustEncode(t, app); got != *c.AppPath {
				t.Errorf("%s: app_path %s, gunicorn %s", c.Name, got, *c.AppPath)
			}
		}
		if c.Action != nil && req.Route.Action != *c.Action {
			t.Errorf("%s: action %q, gunicorn %q", c.Name, req.Route.Action, *c.Action)
		}
	}
}

// Raw JSON ids (escapes, surrogates, number forms, repeated keys) come back
// as gunicorn's arbiter would echo them: json.dumps(json.loads(text)).
func TestGoldenIDs(t *testing.T) {
	for _, c := range loadGolden(t).IDs {
		body := unhex(t, c.BodyHex)
		req, err := ScanRequest(body)
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if got := mustEncode(t, req.ID); got != c.ID {
			t.Errorf("%q: id %s, gunicorn %s", body, got, c.ID)
		}
	}
}

// Everything json.loads refuses is refused, with gunicorn's message prefix
// and raw_data window. (The text after the prefix is Python's
// JSONDecodeError wording where gdirty reproduces it; it is not API.)
func TestGoldenInvalid(t *testing.T) {
	exact := 0
	g := loadGolden(t)
	for _, c := range g.Invalid {
		body := unhex(t, c.BodyHex)
		_, err := ScanRequest(body)
		if err == nil {
			t.Errorf("%q accepted; gunicorn: %s", body, c.Message)
			continue
		}
		derr := compat.ErrProtocol(err)
		if !strings.HasPrefix(derr.Message, decodePrefix) {
			t.Errorf("%q: message %q lacks %q", body, derr.Message, decodePrefix)
		}
		raw, _ := derr.Details.Get("raw_data")
		if raw != c.Details["raw_data"] {
			t.Errorf("%q: raw_data %v, gunicorn %v", body, raw, c.Details["raw_data"])
		}
		if derr.Message == c.Message {
			exact++
		} else {
			t.Logf("%q: %q (gunicorn %q)", body, derr.Message, c.Message)
		}
	}
	t.Logf("%d of %d messages identical to Python's", exact, len(g.Invalid))
}

// Go's synthesised errors == what gunicorn 25.0.3's arbiter writes for the
// same error and id, byte for byte.
func TestGoldenErrors(t *testing.T) {
	for _, c := range loadGolden(t).Errors {
		req, err := ScanRequest([]byte(`{"id": ` + c.ID + `}`))
		if err != nil {
			t.Fatalf("id %s: %v", c.ID, err)
		}
		derr := buildError(t, c.Ctor, c.Args)
		body, err := ErrorMessage(req.ID, derr)
		if err != nil {
			t.Fatalf("%s %v: %v", c.Ctor, c.Args, err)
		}
		if got := hex.EncodeToString(AppendFrame(nil, body)); got != c.Hex {
			want := unhex(t, c.Hex)
			t.Errorf("%s %v id %s:\n got  %s\n want %s", c.Ctor, c.Args, c.ID, body, want[HeaderSize:])
		}
	}
}

// Floats print as json.dumps prints them (repr, NaN, Infinity).
func TestGoldenFloats(t *testing.T) {
	g := loadGolden(t)
	if len(g.Floats) == 0 {
		t.Fatal("no float vectors")
	}
	for _, c := range g.Floats {
		f := math.Float64frombits(binary.BigEndian.Uint64(unhex(t, c.Bits)))
		if got := mustEncode(t, f); got != c.JSON {
			t.Errorf("%s: %s, json.dumps %s", c.Bits, got, c.JSON)
		}
	}
}

// buildError calls the Go constructor the arbiter uses for each error.
func buildError(t *testing.T, ctor string, args []any) *compat.DirtyError {
	t.Helper()
	str := func(i int) string { s, _ := args[i].(string); return s }
	switch ctor {
	case "no_workers":
		return compat.ErrNoWorkers()
	case "no_workers_for_app":
		return compat.ErrNoWorkersForApp(str(0))
	case "no_workers_for_app_value":
		req, err := ScanRequest([]byte(`{"app_path": ` + str(0) + `}`))
		if err != nil {
			t.Fatal(err)
		}
		return compat.ErrNoWorkersForAppValue(req.Route.AppValue)
	case "timeout":
		return compat.ErrTimeout("Worker timeout", int64(args[0].(float64)))
	case "worker":
		return compat.ErrWorker(str(0), int(args[1].(float64)))
	case "protocol":
		pe := &compat.ProtocolError{Message: str(0)}
		if args[1] != nil {
			pe.Raw = unhex(t, str(1))
		}
		return compat.ErrProtocol(pe)
	case "generic":
		return compat.ErrGeneric("%s", str(0))
	}
	t.Fatalf("unknown constructor %q", ctor)
	return nil
}

func mustEncode(t testing.TB, v any) string {
	t.Helper()
	b, err := Encode(v)
	if err != nil {
		t.Fatalf("Encode(%v): %v", v, err)
	}
	return string(b)
}
