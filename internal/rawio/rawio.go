// Package rawio reads and writes sockets through Go's poller without
// entering the runtime's blocking-syscall path.
//
// Why: every read or write through net.Conn is a runtime "syscall", and
// entering one wakes the runtime's monitor thread (sysmon) whenever the
// process was idle before — which, for an arbiter waiting on Python
// workers between calls, is every call: a futex wake, a thread switch and
// a train of 20 µs sleeps per call. Reads and writes on a non-blocking
// socket never block, so they may be issued as raw system calls; the
// poller still parks the goroutine on EAGAIN, and deadlines still apply.
package rawio

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// Conn does raw reads and writes on one socket. Read and Write may be used
// by one goroutine each at a time (as with net.Conn, writes must be
// serialised by the caller).
type Conn struct {
	conn net.Conn
	rrc  syscall.RawConn // reads
	wrc  syscall.RawConn // writes (the same as rrc for a socket)

	// Bound once so that a call allocates no closure.
	readFn   func(uintptr) bool
	rbuf     []byte
	rn       int
	rerrno   syscall.Errno
	writeFn  func(uintptr) bool
	nowaitFn func(uintptr) bool
	iov      []syscall.Iovec
	wn       int
	werrno   syscall.Errno
}

// New wraps conn, which must be a *net.UnixConn or *net.TCPConn (anything
// with SyscallConn); ok is false otherwise.
func New(conn net.Conn) (*Conn, bool) {
	sc, isSC := conn.(syscall.Conn)
	if !isSC {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return newConn(conn, rc, rc), true
}

// SplitConn is a connection whose two directions are separate file
// descriptors (a pair of pipes).
type SplitConn interface {
	net.Conn
	ReadSyscallConn() (syscall.RawConn, error)
	WriteSyscallConn() (syscall.RawConn, error)
}

// NewSplit wraps a connection made of two file descriptors; ok is false
// if either has none.
func NewSplit(conn SplitConn) (*Conn, bool) {
	rrc, err := conn.ReadSyscallConn()
	if err != nil {
		return nil, false
	}
	wrc, err := conn.WriteSyscallConn()
	if err != nil {
		return nil, false
	}
	return newConn(conn, rrc, wrc), true
}

func newConn(conn net.Conn, rrc, wrc syscall.RawConn) *Conn {
	c := &Conn{conn: conn, rrc: rrc, wrc: wrc}
	c.readFn = c.doRead
	c.writeFn = c.doWrite
	c.nowaitFn = c.nowait
	return c
}

func (c *Conn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for readability
		}
		c.rn, c.rerrno = int(n), e
		return true
	}
}

// Read reads into p like net.Conn.Read (io.EOF at the end of the stream;
// read deadlines apply).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rrc.Read(c.readFn)
	c.rbuf = nil
	if err != nil {
		return 0, err
	}
	if c.rerrno != 0 {
		return 0, fmt.Errorf("read: %w", c.rerrno)
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

// maxIOV bounds the vectors one writev takes (Linux IOV_MAX is 1024).
const maxIOV = 1024

func (c *Conn) doWrite(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(len(c.iov)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for writability
		}
		c.wn, c.werrno = int(n), e
		return true
	}
}

// nowait: one attempt, never parking (EAGAIN is reported as such).
func (c *Conn) nowait(fd uintptr) bool {
	c.doWrite(fd)
	return true
}

// Writev writes every buffer, in order, with as few writev calls as the
// socket allows. It first tries without waiting; only if the socket is
// full does it set a write deadline timeout ahead (none if timeout is 0)
// and wait for the rest: the fast path arms no timer.
func (c *Conn) Writev(bufs [][]byte, timeout time.Duration) (int, error) {
	total := 0
	waited := false
	defer func() {
		if waited && timeout > 0 {
			_ = c.conn.SetWriteDeadline(time.Time{})
		}
	}()
	for len(bufs) > 0 {
		c.iov = c.iov[:0]
		for _, b := range bufs {
			if len(c.iov) == maxIOV {
				break
			}
			if len(b) > 0 {
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				c.iov = append(c.iov, v)
			}
		}
		if len(c.iov) == 0 {
			break
		}
		c.wn, c.werrno = 0, syscall.EAGAIN
		var err error
		if !waited {
			err = c.wrc.Write(c.nowaitFn)
			if err == nil && c.werrno == syscall.EAGAIN {
				waited = true
				if timeout > 0 {
					_ = c.conn.SetWriteDeadline(time.Now().Add(timeout))
				}
				continue
			}
		} else {
			err = c.wrc.Write(c.writeFn)
		}
		for i := range c.iov {
			c.iov[i] = syscall.Iovec{} // drop references to payloads
		}
		if err != nil {
			return total, err
		}
		if c.werrno != 0 {
			return total, fmt.Errorf("writev: %w", c.werrno)
		}
		if c.wn == 0 {
			return total, io.ErrShortWrite
		}
		total += c.wn
		bufs = consume(bufs, c.wn)
	}
	return total, nil
}

// consume drops n written bytes from the front of bufs.
func consume(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	return bufs
}
