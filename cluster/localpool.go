package cluster

import (
	"bufio"
	"net"
	"sync"
)

// localPool keeps idle connections to this node's own arbiter for the
// calls other nodes send here, so a call costs no new connection,
// goroutine or read buffer on either side.
type localPool struct {
	dial func() (net.Conn, error)
	max  int

	mu     sync.Mutex
	idle   []*localConn
	closed bool
}

// localConn is one connection with its read buffer (small: answer
// payloads are read straight into the caller's buffer).
type localConn struct {
	net.Conn
	r *bufio.Reader
}

const maxIdleLocal = 64

func newLocalPool(dial func() (net.Conn, error)) *localPool {
	return &localPool{dial: dial, max: maxIdleLocal}
}

// get returns an idle connection (reused true) or a new one.
func (p *localPool) get() (c *localConn, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	c, err = p.fresh()
	return c, false, err
}

func (p *localPool) fresh() (*localConn, error) {
	conn, err := p.dial()
	if err != nil {
		return nil, err
	}
	return &localConn{Conn: conn, r: bufio.NewReaderSize(conn, 4096)}, nil
}

// put returns a connection whose call ended cleanly (every frame read).
func (p *localPool) put(c *localConn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max || c.r.Buffered() > 0 {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *localPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}
