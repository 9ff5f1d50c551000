package worker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gdirty/gdirty/internal/rawio"
)

// gdirty's end of a link over real pipes, the worker's end driven by hand.

func TestPipeLinkCarriesBothDirections(t *testing.T) {
	conn, child, err := newLinkPair()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer child.Close()
	raw, ok := rawio.NewSplit(conn)
	if !ok {
		t.Fatal("pipeConn has no file descriptors for rawio")
	}
	// gdirty -> worker: larger than the pipe, read concurrently.
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*linkPipeSize)/16)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(child.In, int64(len(big))))
		got <- b
	}()
	if _, err := raw.Writev([][]byte{big[:10], big[10:]}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("worker read %d bytes, want the %d written", len(b), len(big))
	}
	// worker -> gdirty.
	if _, err := child.Out.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := raw.Read(buf)
	if err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

func TestPipeLinkEOFWhenWorkerGoneAndCloseEndsRead(t *testing.T) {
	conn, child, err := newLinkPair()
	if err != nil {
		t.Fatal(err)
	}
	// Only gdirty's ends are non-blocking: a Python worker reads and
	// writes its ends with blocking calls.
	for name, f := range map[string]interface{ Fd() uintptr }{"worker in": child.In, "worker out": child.Out} {
		fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK != 0 {
			t.Fatalf("%s: flags %#x, %v: want blocking", name, fl, err)
		}
	}
	child.Close() // the worker exited
	if _, err := conn.Read(make([]byte, 8)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the worker's end closed: %v, want EOF", err)
	}
	conn2, child2, err := newLinkPair()
	if err != nil {
		t.Fatal(err)
	}
	defer child2.Close()
	done := make(chan error, 1)
	go func() {
		_, err := conn2.Read(make([]byte, 8))
		done <- err
	}()
	if err := conn2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read")
	}
	if err := conn2.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}
