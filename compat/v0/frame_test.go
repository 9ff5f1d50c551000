package v0

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gdirty/gdirty/compat"
)

// failAfter fails any read past the first n bytes, so a test proves the
// reader decided without touching the body.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("read past the length prefix")
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestReadFrameTooLargeRefusedBeforeBody(t *testing.T) {
	hdr := []byte{0x04, 0x00, 0x00, 0x01} // 64 MiB + 1
	_, err := ReadFrame(&failAfter{r: bytes.NewReader(append(hdr, '{')), n: HeaderSize}, nil)
	if !compat.IsKind(err, compat.KindMessageTooLarge) {
		t.Fatalf("got %v, want message too large", err)
	}
	if want := "Message too large: 67108865 bytes (max: 67108864)"; compat.ErrProtocol(err).Message != want {
		t.Fatalf("message %q, want %q", compat.ErrProtocol(err).Message, want)
	}
}

func TestReadFrameAnnouncedButMissingCostsLittle(t *testing.T) {
	hdr := []byte{0x04, 0x00, 0x00, 0x00} // exactly 64 MiB, then 3 bytes
	_, err := ReadFrame(bytes.NewReader(append(hdr, "{}x"...)), nil)
	if !compat.IsKind(err, compat.KindTruncated) {
		t.Fatalf("got %v, want truncated", err)
	}
	if want := "Incomplete message: got 3 bytes, expected 67108864"; compat.ErrProtocol(err).Message != want {
		t.Fatalf("message %q", compat.ErrProtocol(err).Message)
	}
}

func TestReadFrameEdges(t *testing.T) {
	if _, err := ReadFrame(bytes.NewReader(nil), nil); !errors.Is(err, io.EOF) {
		t.Fatalf("clean close: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0}), nil); !compat.IsKind(err, compat.KindTruncated) {
		t.Fatalf("short prefix: %v", err)
	}
	body, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 0}), nil)
	if err != nil || len(body) != 0 {
		t.Fatalf("empty body: %q %v", body, err)
	}
	if _, err := ScanRequest(body); err == nil || compat.ErrProtocol(err).Message != "Empty message received" {
		t.Fatalf("empty body scan: %v", err)
	}
}

func TestScanRequestRefusesNonObjects(t *testing.T) {
	for _, body := range []string{`[1]`, ` "x" `, `5`, `null`} {
		_, err := ScanRequest([]byte(body))
		if err == nil {
			t.Fatalf("%q accepted", body)
		}
		if got := compat.ErrProtocol(err).Message; got != decodePrefix+"the message is not a JSON object" {
			t.Fatalf("%q: %q", body, got)
		}
	}
}

func TestScanRequestDepthBound(t *testing.T) {
	deep := `{"args": ` + string(bytes.Repeat([]byte("["), compat.MaxDepth+1)) + string(bytes.Repeat([]byte("]"), compat.MaxDepth+1)) + `}`
	if _, err := ScanRequest([]byte(deep)); err == nil {
		t.Fatal("nesting past the bound accepted")
	}
	ok := `{"args": ` + string(bytes.Repeat([]byte("["), compat.MaxDepth-2)) + string(bytes.Repeat([]byte("]"), compat.MaxDepth-2)) + `}`
	if _, err := ScanRequest([]byte(ok)); err != nil {
		t.Fatalf("nesting within the bound refused: %v", err)
	}
}

func TestScanRequestTrimsLeadingWhitespace(t *testing.T) {
	req, err := ScanRequest([]byte(" \n\t{\"id\": \"a\", \"app_path\": \"m:A\", \"action\": \"go\"} \r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if req.Body[0] != '{' || req.ID != "a" || req.Route.AppPath != "m:A" || !req.Route.AppIsString || req.Route.Action != "go" {
		t.Fatalf("got %+v", req)
	}
}

func TestEncodeRefusesBytes(t *testing.T) {
	if _, err := Encode([]any{[]byte("x")}); err == nil || err.Error() != "Object of type bytes is not JSON serializable" {
		t.Fatalf("got %v", err)
	}
}
