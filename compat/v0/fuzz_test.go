package v0

// Fuzz targets for the v0 decoder, seeded from gunicorn 25.0.3's golden
// vectors. Run one with e.g.
//
//	go test ./compat/v0 -run '^$' -fuzz '^FuzzScanRequest$' -fuzztime 30s

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/gdirty/gdirty/compat"
)

const maxSeed = 64 << 10

func seed(f *testing.F, frames bool) {
	g := loadGolden(f)
	add := func(b []byte) {
		if len(b) <= maxSeed {
			f.Add(b)
		}
	}
	for _, c := range g.Frames {
		b := unhex(f, c.Hex)
		if !frames {
			b = b[HeaderSize:]
		}
		add(b)
	}
	for _, c := range g.Invalid {
		b := unhex(f, c.BodyHex)
		if frames {
			b = AppendFrame(nil, b)
		}
		add(b)
	}
	for _, c := range g.IDs {
		add(unhex(f, c.BodyHex))
	}
}

// Any body: no panic; an accepted one is an object whose id re-encodes to
// JSON that scans back to the same encoding (json.dumps(json.loads(x)) is
// a fixed point); a refused one carries gunicorn's prefix or empty text.
func FuzzScanRequest(f *testing.F) {
	seed(f, false)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ScanRequest(body)
		if err != nil {
			var pe *compat.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if len(pe.Raw) > maxRaw {
				t.Fatalf("raw_data window %d bytes", len(pe.Raw))
			}
			return
		}
		if len(req.Body) == 0 || req.Body[0] != '{' {
			t.Fatalf("accepted body does not start with '{': %q", req.Body)
		}
		id, err := Encode(req.ID)
		if err != nil {
			t.Fatalf("id %v does not encode: %v", req.ID, err)
		}
		again, err := ScanRequest(append(append([]byte(`{"id": `), id...), '}'))
		if err != nil {
			t.Fatalf("re-encoded id %s refused: %v", id, err)
		}
		if id2, _ := Encode(again.ID); !bytes.Equal(id, id2) {
			t.Fatalf("id not a fixed point: %s then %s", id, id2)
		}
		if _, err := ErrorMessage(req.ID, compat.ErrNoWorkersForAppValue(req.Route.AppValue)); err != nil {
			t.Fatalf("error message for id %s: %v", id, err)
		}
	})
}

// Any byte stream, read whole or a byte at a time: no panic, frames come
// back in order, and a length over the bound is refused before reading.
func FuzzReadFrame(f *testing.F) {
	seed(f, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []io.Reader{bytes.NewReader(data), iotest.OneByteReader(bytes.NewReader(data))} {
			var buf []byte
			for {
				body, err := ReadFrame(r, buf)
				if err != nil {
					if !errors.Is(err, io.EOF) && !compat.IsKind(err, compat.KindTruncated) && !compat.IsKind(err, compat.KindMessageTooLarge) {
						t.Fatalf("unexpected error %v", err)
					}
					break
				}
				if len(body) > MaxMessageSize {
					t.Fatalf("body of %d bytes", len(body))
				}
				buf = body[:0]
			}
		}
	})
}
