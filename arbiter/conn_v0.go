package arbiter

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"

	"github.com/gdirty/gdirty/compat"
	v0 "github.com/gdirty/gdirty/compat/v0"
)

// answerFormat renders the answers of a connection that does not speak
// protocol v1. The dispatch and relay code (conn.go) is shared: it writes
// through clientConn.writeFrame and clientConn.writeError, which defer to
// the format when one is set.
type answerFormat interface {
	// header puts the header of an answer frame of length payload bytes
	// the worker produced (RESPONSE, ERROR, CHUNK or END) into dst and
	// returns what to send; for v0 the worker already wrote the final JSON
	// body, so the header is its length.
	header(dst []byte, t compat.MsgType, length uint32, id uint64) []byte
	// errorFrame renders an error the arbiter synthesised itself.
	errorFrame(e *compat.DirtyError, id uint64) []byte
}

// v0Format is gunicorn 25.0's protocol: a 4-byte length and a JSON body.
// Calls on a connection run one at a time, so the id of the call being
// answered is simply the last one read (v1's numeric ids are unused).
type v0Format struct {
	id any // the request's "id" as json.loads gives it
}

func (f *v0Format) header(dst []byte, _ compat.MsgType, length uint32, _ uint64) []byte {
	v0.PutLength(dst, int(length))
	return dst[:v0.HeaderSize]
}

func (f *v0Format) errorFrame(e *compat.DirtyError, _ uint64) []byte {
	body, err := v0.ErrorMessage(f.id, e)
	if err != nil {
		// Only an id JSON cannot carry could get here, and ids come from
		// JSON; keep the error, drop the id.
		body, _ = v0.ErrorMessage("unknown", e)
	}
	return v0.AppendFrame(nil, body)
}

// serveV0 serves a connection from a gunicorn 25.0.x client. Requests are
// validated and forwarded to a worker as they arrived (the worker writes
// the answers' final JSON), answers are relayed with a length prefix.
func (c *clientConn) serveV0(r *bufio.Reader) {
	f := &v0Format{}
	c.format = f
	var buf []byte
	for {
		body, err := v0.ReadFrame(r, buf)
		if err != nil {
			c.v0ReadFailed(err)
			return
		}
		if cap(body) > cap(buf) && cap(body) <= 4*readBufferSize {
			buf = body[:0] // keep modest buffers for the next message
		}
		if !c.setBusy(true) {
			return
		}
		c.handleV0(f, body)
		if !c.setBusy(false) || c.isBroken() {
			return
		}
	}
}

// handleV0 answers one message. A body that is not a JSON object leaves
// the stream in step (its length was read), so the client gets a
// DirtyProtocolError for it and the connection carries on. gunicorn's
// arbiter forwards any message type to a worker, which answers one it
// does not know; so does gdirty.
func (c *clientConn) handleV0(f *v0Format, body []byte) {
	started := c.s.metrics.CallStarted()
	req, err := v0.ScanRequest(body)
	if err != nil {
		f.id = "unknown" // gunicorn's arbiter's id for a request without one
		c.s.log.Warnf("Malformed message from client: %v", err)
		c.writeError(compat.ErrProtocol(err), 0)
		c.s.metrics.CallFinished("", "", OutcomeProtocol, started)
		return
	}
	f.id = req.ID
	c.call(0, req.Route, req.Body, started)
}

// v0ReadFailed ends a connection whose stream is out of step (a length
// over 64 MiB, a message cut short). Nothing is answered, as gunicorn
// 25.0's arbiter answers nothing: the length may be garbage (a v1 frame
// with a bad magic lands here too), and the client sees the close.
func (c *clientConn) v0ReadFailed(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return
	}
	c.s.log.Warnf("Closing client connection: %v", err)
}

// refuseV0 is refuse for a gunicorn 25.0.x client: its first request gets
// the DirtyError, under its own id when it has one.
func refuseV0(conn net.Conn, r io.Reader, message string) {
	body, err := v0.ReadFrame(r, nil)
	if err != nil {
		return
	}
	f := &v0Format{id: "unknown"}
	if req, err := v0.ScanRequest(body); err == nil {
		f.id = req.ID
	}
	_, _ = conn.Write(f.errorFrame(compat.ErrGeneric("%s", message), 0))
}
