package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pair returns two connected Unix stream sockets.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	a, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func mustNew(t *testing.T, c net.Conn) *Conn {
	t.Helper()
	r, ok := New(c)
	if !ok {
		t.Fatal("not a syscall conn")
	}
	return r
}

func TestWritevLargeAndManyBuffersRoundTrip(t *testing.T) {
	a, b := pair(t)
	w, r := mustNew(t, a), mustNew(t, b)
	var bufs [][]byte
	var want []byte
	for i := 0; i < 3000; i++ { // more vectors than one writev takes
		p := bytes.Repeat([]byte{byte(i)}, 1+i%5000)
		bufs = append(bufs, p)
		want = append(want, p...)
	}
	bufs = append(bufs, nil, []byte{}) // empty buffers are skipped
	got := make(chan []byte, 1)
	go func() {
		var out []byte
		buf := make([]byte, 7000)
		for {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("read: %v", err)
				}
				got <- out
				return
			}
		}
	}()
	n, err := w.Writev(bufs, 10*time.Second)
	if err != nil || n != len(want) {
		t.Fatalf("writev: %d %v, want %d", n, err, len(want))
	}
	a.Close()
	if out := <-got; !bytes.Equal(out, want) {
		t.Fatalf("read %d bytes, want %d identical", len(out), len(want))
	}
}

func TestWriteDeadlineOnlyWhenBlockedAndCleared(t *testing.T) {
	a, b := pair(t)
	w := mustNew(t, a)
	big := make([]byte, 32<<20) // far more than the socket buffers
	_, err := w.Writev([][]byte{big}, 50*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writev to a peer that never reads: %v, want a deadline error", err)
	}
	// Drain what went through, then a small write must succeed: the
	// deadline set for the blocked write was cleared.
	go func() { _, _ = io.Copy(io.Discard, b) }()
	if _, err := w.Writev([][]byte{[]byte("ok")}, time.Second); err != nil {
		t.Fatalf("small write after a timed-out one: %v", err)
	}
}

func TestReadHonoursDeadlineAndClose(t *testing.T) {
	a, b := pair(t)
	r := mustNew(t, a)
	_ = a.SetReadDeadline(time.Now())
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	_ = a.SetReadDeadline(time.Time{})
	b.Close()
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
	a.Close()
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed conn: %v, want net.ErrClosed", err)
	}
}

func TestNewRefusesConnsWithoutFD(t *testing.T) {
	a, _ := net.Pipe()
	defer a.Close()
	if _, ok := New(a); ok {
		t.Fatal("net.Pipe has no fd")
	}
}
