package worker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
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
	// (Read through SyscallConn: File.Fd would itself make the fd blocking.)
	for name, f := range map[string]*os.File{"worker in": child.In, "worker out": child.Out, "gdirty in": conn.r} {
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fl int
		var flErr error
		if err := rc.Control(func(fd uintptr) { fl, flErr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || flErr != nil {
			t.Fatalf("%s: %v %v", name, err, flErr)
		}
		if blocking := fl&unix.O_NONBLOCK == 0; blocking != (name != "gdirty in") {
			t.Fatalf("%s: flags %#x: O_NONBLOCK set = %v", name, fl, !blocking)
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
