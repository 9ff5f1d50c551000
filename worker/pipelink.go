package worker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A worker link is two pipes, one per direction, not a socketpair: a Unix
// stream socket wakes its writer's poller (EPOLLOUT) every time the peer
// reads, so with a socketpair gdirty's poller woke once per request only
// to learn that the worker had read it. A pipe wakes its writer only when
// it was full, which is when the writer is waiting anyway.

// linkPipeSize is each link pipe's capacity (the default is 64 KiB): one
// answer piece (64 KiB plus headers) and what follows it fit without
// partial writes. Not fatal if refused (a user's pipe quota).
const linkPipeSize = 256 << 10

// childLink is the worker's end of its link: it reads requests from In
// and writes answers to Out.
type childLink struct {
	In, Out *os.File
}

func (c childLink) Close() {
	c.In.Close()
	c.Out.Close()
}

// newLinkPair returns gdirty's end of a fresh worker link and the
// worker's end (to hand over).
func newLinkPair() (*pipeConn, childLink, error) {
	var toWorker, fromWorker [2]int
	if err := unix.Pipe2(toWorker[:], unix.O_CLOEXEC); err != nil {
		return nil, childLink{}, fmt.Errorf("create worker link: %w", err)
	}
	if err := unix.Pipe2(fromWorker[:], unix.O_CLOEXEC); err != nil {
		unix.Close(toWorker[0])
		unix.Close(toWorker[1])
		return nil, childLink{}, fmt.Errorf("create worker link: %w", err)
	}
	for _, fd := range []int{toWorker[1], fromWorker[0]} {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, linkPipeSize)
		// Only gdirty's ends are non-blocking (each end of a pipe is its
		// own open file): Go's poller serves them, the worker blocks.
		if err := unix.SetNonblock(fd, true); err != nil {
			for _, f := range []int{toWorker[0], toWorker[1], fromWorker[0], fromWorker[1]} {
				unix.Close(f)
			}
			return nil, childLink{}, fmt.Errorf("worker link: %w", err)
		}
	}
	conn := &pipeConn{
		r: os.NewFile(uintptr(fromWorker[0]), "gdirty-link-in"),
		w: os.NewFile(uintptr(toWorker[1]), "gdirty-link-out"),
	}
	child := childLink{
		In:  os.NewFile(uintptr(toWorker[0]), "gdirty-link-worker-in"),
		Out: os.NewFile(uintptr(fromWorker[1]), "gdirty-link-worker-out"),
	}
	return conn, child, nil
}

// pipeConn is gdirty's end of a link as a net.Conn: reads from one pipe,
// writes to the other (rawio.NewSplit takes both descriptors).
type pipeConn struct {
	r, w *os.File
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }

// Close closes both pipes: the worker reads EOF, and a read blocked on the
// other pipe returns.
func (p *pipeConn) Close() error {
	errR, errW := p.r.Close(), p.w.Close()
	if errors.Is(errR, os.ErrClosed) && errors.Is(errW, os.ErrClosed) {
		return net.ErrClosed
	}
	return errors.Join(errR, errW)
}

func (p *pipeConn) ReadSyscallConn() (syscall.RawConn, error)  { return p.r.SyscallConn() }
func (p *pipeConn) WriteSyscallConn() (syscall.RawConn, error) { return p.w.SyscallConn() }

func (p *pipeConn) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetReadDeadline(t), p.w.SetWriteDeadline(t))
}
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }
func (p *pipeConn) LocalAddr() net.Addr                { return pipeAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr               { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "worker link" }
