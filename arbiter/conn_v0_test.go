package arbiter

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/compat"
	v0 "github.com/gdirty/gdirty/compat/v0"
)

// A server with no pool: every call gets an error the arbiter makes
// itself, which is what the v0 connection code adds (the relay of worker
// answers is shared with v1 and covered by the interop suite).
func startV0TestServer(t *testing.T) string {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := NewServer(Config{Timeout: 2 * time.Second, Threads: 1, Log: log})
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return path
}

func dialV0(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func sendV0(t *testing.T, c net.Conn, body string) {
	t.Helper()
	if _, err := c.Write(v0.AppendFrame(nil, []byte(body))); err != nil {
		t.Fatal(err)
	}
}

func readV0(t *testing.T, c net.Conn) string {
	t.Helper()
	body, err := v0.ReadFrame(c, nil)
	if err != nil {
		t.Fatalf("read v0 answer: %v", err)
	}
	return string(body)
}

func TestV0ConnectionAnswersInItsProtocol(t *testing.T) {
	path := startV0TestServer(t)
	c := dialV0(t, path)
	sendV0(t, c, `{"type": "request", "id": "caf\u00e9", "app_path": "m:A", "action": "x", "args": [], "kwargs": {}}`)
	want := `{"type": "error", "id": "caf\u00e9", "error": {"error_type": "DirtyError", "message": "No dirty workers available", "details": {}}}`
	if got := readV0(t, c); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Malformed bodies are answered under "unknown"; the connection goes on.
	for _, bad := range []string{"{bad", "[1]", ""} {
		sendV0(t, c, bad)
		got := readV0(t, c)
		if !bytes.HasPrefix([]byte(got), []byte(`{"type": "error", "id": "unknown", "error": {"error_type": "DirtyProtocolError"`)) {
			t.Fatalf("%q: got %s", bad, got)
		}
	}
	sendV0(t, c, `{"id": 7, "app_path": 5}`)
	want = `{"type": "error", "id": 7, "error": {"error_type": "DirtyNoWorkersAvailableError", "message": "No workers available for app: 5", "details": {"app_path": 5}}}`
	if got := readV0(t, c); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestV0BrokenFramingClosesOnlyItsConnection(t *testing.T) {
	path := startV0TestServer(t)
	bystander := dialV0(t, path)
	v1 := dialV0(t, path)
	for _, bad := range [][]byte{
		{0x04, 0x00, 0x00, 0x01, '{', '}'},           // over 64 MiB
		{0x00, 0x00, 0x00, 0x10, '{', '"', 'a', '"'}, // cut short
		[]byte("XX" + string(make([]byte, 14))),      // a v1 frame with a bad magic
	} {
		c := dialV0(t, path)
		if _, err := c.Write(bad); err != nil {
			t.Fatal(err)
		}
		if uc, ok := c.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("% x: read %d, %v; want a silent close", bad, n, err)
		}
	}
	sendV0(t, bystander, `{"id": "b", "app_path": "m:A"}`)
	if got := readV0(t, bystander); !bytes.Contains([]byte(got), []byte(`"id": "b"`)) {
		t.Fatalf("bystander got %s", got)
	}
	// A v1 client on the same server still speaks v1.
	if _, err := v1.Write(compat.AppendFrame(nil, compat.MsgRequest, 9, mustTLV(t))); err != nil {
		t.Fatal(err)
	}
	h, _, err := compat.ReadFrame(v1, nil)
	if err != nil || h.Type != compat.MsgError || h.ID != 9 {
		t.Fatalf("v1 answer %+v, %v", h, err)
	}
}

func mustTLV(t *testing.T) []byte {
	t.Helper()
	b, err := compat.Encode(compat.NewDict("app_path", "m:A", "action", "x", "args", []any{}, "kwargs", &compat.Dict{}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The length prefix a v0 answer carries is its body's length.
func TestV0AnswerFramePrefix(t *testing.T) {
	f := &v0Format{id: "r"}
	frame := f.errorFrame(compat.ErrNoWorkers(), 0)
	if n := binary.BigEndian.Uint32(frame); int(n) != len(frame)-v0.HeaderSize {
		t.Fatalf("prefix %d for a %d-byte body", n, len(frame)-v0.HeaderSize)
	}
	var dst [compat.HeaderSize]byte
	h := f.header(dst[:], compat.MsgResponse, 8, 0)
	if got := binary.BigEndian.Uint32(h); len(h) != v0.HeaderSize || got != 8 {
		t.Fatalf("header %x, want the 4-byte length 8", h)
	}
}
