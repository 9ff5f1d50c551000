package worker

import (
	"encoding/binary"
	"fmt"

	"github.com/gdirty/gdirty/compat"
)

// Large answers cross the worker link in pieces, so that neither side ever
// needs a whole 16 MiB answer in memory and one large answer does not hold
// up the other calls multiplexed on the link: their frames interleave with
// its pieces.
//
//	msgFrameBegin  payload: type (1 byte), total payload length (uint32 BE),
//	               then the first piece of the payload
//	msgFrameMore   payload: the next piece of the payload
//
// A frame is complete once its pieces add up to its total. Whole frames of
// gunicorn's answer types still work for any size (small answers use them).
//
// The worker keeps at most creditWindow (1 MiB) of one call's answer
// unacknowledged, each frame or piece counting its payload plus FrameCost;
// gdirty acknowledges (msgCredit, payload: the cumulative count written to
// the client, uint64 BE) as it writes them out, so what a call holds in
// gdirty is bounded however slow its client is. Final frames are counted
// but never held back.
const (
	msgFrameBegin compat.MsgType = 0x43
	msgFrameMore  compat.MsgType = 0x44
	msgCredit     compat.MsgType = 0x45
)

const (
	// FrameCost is what every answer frame or piece of a call counts
	// against its window besides its payload (FRAME_COST in link.py, which
	// must agree exactly): queued frames cost gdirty more than their
	// payload, so a stream of tiny chunks is bounded too.
	FrameCost = 64
	// beginPrefix is the type byte and total length in front of the first piece.
	beginPrefix = 5
	// maxPiece bounds one piece; the worker sends 64 KiB pieces.
	maxPiece = 1 << 20
	// creditStep: gdirty acknowledges a call's answer bytes each time this
	// many more have been written to its client. The worker's window
	// (creditWindow in link.py, 1 MiB) must exceed step + piece, or it
	// could wait for an acknowledgement that never comes.
	creditStep = 256 << 10
	// unlimitedCredit lifts a call's window: sent when gdirty stops
	// listening to a call, so the worker never waits on it.
	unlimitedCredit = 1 << 62
)

// partial tracks the frame a call's pieces are assembling. It is touched
// only by the link's reader goroutine.
type partial struct {
	typ  compat.MsgType
	left uint32 // payload bytes still to come; 0: no frame in progress
}

// isAnswerType reports whether t is a gunicorn answer type a worker may send.
func isAnswerType(t compat.MsgType) bool {
	switch t {
	case compat.MsgResponse, compat.MsgError, compat.MsgChunk, compat.MsgEnd:
		return true
	}
	return false
}

// next turns one link frame for a call into the Frame to queue for its
// caller, checking that pieces follow the rules above. payload is the link
// frame's payload; the returned Frame's Payload aliases it.
func (p *partial) next(t compat.MsgType, payload []byte) (Frame, error) {
	switch {
	case isAnswerType(t):
		if p.left > 0 {
			return Frame{}, fmt.Errorf("whole %s frame inside a fragmented %s frame (%d bytes missing)", t, p.typ, p.left)
		}
		return Frame{Type: t, Payload: payload, Total: uint32(len(payload))}, nil
	case t == msgFrameBegin:
		if p.left > 0 {
			return Frame{}, fmt.Errorf("new fragmented frame inside a fragmented %s frame (%d bytes missing)", p.typ, p.left)
		}
		ft, total, data, err := parseBegin(payload)
		if err != nil {
			return Frame{}, err
		}
		p.typ, p.left = ft, total-uint32(len(data))
		return Frame{Type: ft, Payload: data, Total: total, More: p.left > 0}, nil
	case t == msgFrameMore:
		if p.left == 0 {
			return Frame{}, fmt.Errorf("fragment with no fragmented frame in progress")
		}
		if uint64(len(payload)) > uint64(p.left) {
			return Frame{}, fmt.Errorf("fragment of %d bytes overruns its %s frame by %d", len(payload), p.typ, uint64(len(payload))-uint64(p.left))
		}
		p.left -= uint32(len(payload))
		return Frame{Type: p.typ, Payload: payload, Cont: true, More: p.left > 0}, nil
	}
	return Frame{}, fmt.Errorf("unexpected message type 0x%02x", uint8(t))
}

// abort forgets a frame in progress; the worker ends a cancelled call
// without finishing it.
func (p *partial) abort() { p.left = 0 }

// parseBegin splits a msgFrameBegin payload.
func parseBegin(b []byte) (t compat.MsgType, total uint32, data []byte, err error) {
	if len(b) < beginPrefix {
		return 0, 0, nil, fmt.Errorf("fragmented frame start of %d bytes, need %d", len(b), beginPrefix)
	}
	t = compat.MsgType(b[0])
	if t != compat.MsgResponse && t != compat.MsgError && t != compat.MsgChunk {
		return 0, 0, nil, fmt.Errorf("fragmented frame of type 0x%02x", b[0])
	}
	total = binary.BigEndian.Uint32(b[1:beginPrefix])
	data = b[beginPrefix:]
	if total > compat.MaxMessageSize {
		return 0, 0, nil, fmt.Errorf("fragmented frame of %d bytes (max: %d)", total, compat.MaxMessageSize)
	}
	if uint64(len(data)) > uint64(total) {
		return 0, 0, nil, fmt.Errorf("first fragment of %d bytes overruns its %d-byte frame", len(data), total)
	}
	return t, total, data, nil
}
