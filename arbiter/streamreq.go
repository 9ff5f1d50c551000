package arbiter

import (
	"bufio"
	"errors"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
)

// streamMin: requests with a larger payload are forwarded to the worker
// piece by piece while they arrive, validated on the way (compat.StreamScan);
// smaller ones are read whole, which costs less per call.
const streamMin = 256 << 10

// requestPiece is the size of the pieces a large request crosses the link in.
const requestPiece = 64 << 10

// streamForward receives a large request's pieces from the scan and sends
// them on: to the worker once the request's app_path is known, into a
// buffer before that (a request whose app_path comes late, or is not a
// str, is thus read whole and served as any other).
type streamForward struct {
	c     *clientConn
	scan  *compat.StreamScan
	total int

	w       *worker.Process
	call    *worker.Call
	derr    *compat.DirtyError // routing failed: answered after the scan
	linkErr error              // the link broke mid-request
	buf     []byte             // pieces held until the route is known
}

func (f *streamForward) emit(p []byte) error {
	switch {
	case f.call != nil:
		if f.linkErr == nil {
			f.linkErr = f.w.Link().SendMore(f.call, p)
		}
		return nil
	case f.derr != nil:
		return nil // dropped: the client gets the routing error
	}
	app, known := f.scan.EarlyRoute()
	// A call for an app only other nodes host is read whole and goes
	// through the cluster like any other (cluster.RemoteCaller takes a
	// whole payload).
	if !known || f.buf != nil || f.c.remoteFor(app) != nil {
		f.buf = append(f.buf, p...)
		return nil
	}
	w, call, derr := f.c.dispatch(app, p, f.total)
	if derr != nil {
		f.derr = derr
		return nil
	}
	f.w, f.call = w, call
	return nil
}

// handleStreamed serves a REQUEST whose payload is still on r. It reports
// false when the connection must close.
func (c *clientConn) handleStreamed(r *bufio.Reader, h compat.Header) bool {
	started := c.s.metrics.CallStarted()
	c.s.calls.Add(1)
	f := &streamForward{c: c, total: int(h.Length)}
	f.scan = compat.NewStreamScan(r, f.total, requestPiece, f.emit)
	route, err := f.scan.Scan()
	abort := func() {
		if f.call != nil {
			f.w.Link().Cancel(f.call)
		}
	}
	var pe *compat.ProtocolError
	switch {
	case errors.As(err, &pe):
		abort()
		c.write(compat.ErrProtocol(err).Frame(h.ID))
		c.s.metrics.CallFinished(route.AppPath, route.Action, OutcomeProtocol, started)
		return true
	case errors.Is(err, compat.ErrAppPathTooLong) && f.call == nil && f.derr == nil:
		// Buffered whole: ScanRequest handles it as it would any request.
	case err != nil:
		abort()
		if !errors.Is(err, compat.ErrAppPathTooLong) {
			c.s.log.Warnf("Closing client connection: %v", err)
			c.s.metrics.CallFinished(route.AppPath, route.Action, OutcomeClient, started)
			return false
		}
		c.write(compat.ErrGeneric("app_path longer than 64 KiB in a streamed request").Frame(h.ID))
		c.s.metrics.CallFinished("", route.Action, OutcomeProtocol, started)
		return true
	}
	if f.call == nil {
		if f.derr != nil {
			c.write(f.derr.Frame(h.ID))
			c.s.metrics.CallFinished(route.AppPath, route.Action, outcomeFor(f.derr), started)
			return true
		}
		// Never routed: the request is whole in f.buf.
		if err := f.scan.Finish(); err != nil {
			c.s.metrics.CallFinished(route.AppPath, route.Action, OutcomeClient, started)
			return false
		}
		c.serveRequest(h.ID, f.buf, started)
		return true
	}
	if !route.AnyWorker() && !route.AppIsString {
		// A later app_path key that is not a str: gunicorn's answer.
		abort()
		c.write(compat.ErrNoWorkersForAppValue(route.AppValue).Frame(h.ID))
		c.s.metrics.CallFinished("", route.Action, OutcomeNoWorkers, started)
		return true
	}
	if err := f.scan.Finish(); err != nil {
		abort()
		c.s.metrics.CallFinished(route.AppPath, route.Action, OutcomeClient, started)
		return false
	}
	// A streamed request cannot be routed again: its bytes are gone.
	outcome := c.s.relayAnswer(c, &c.batch, h.ID, f.w, f.call, false)
	c.s.metrics.CallFinished(route.AppPath, route.Action, outcome, started)
	return true
}

func outcomeFor(derr *compat.DirtyError) string {
	if derr.Type == "DirtyTimeoutError" {
		return OutcomeTimeout
	}
	return OutcomeNoWorkers
}
