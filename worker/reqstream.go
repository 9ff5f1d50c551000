package worker

import (
	"encoding/binary"
	"fmt"

	"github.com/gdirty/gdirty/compat"
)

// A large request crosses the link in pieces as it arrives from the
// client, so gdirty never holds it whole:
//
//	msgReqBegin  payload: total payload length (uint32 BE), first piece
//	msgReqMore   payload: the next piece
//
// The worker assembles the pieces and runs the call only once the total
// has arrived; msgCancel before that drops what it has (the worker then
// ends the call with END, which frees its slot).
const (
	msgReqBegin compat.MsgType = 0x46
	msgReqMore  compat.MsgType = 0x47
)

// StartStream starts a call whose request payload (total bytes) will
// arrive in pieces: first now, the rest through SendMore.
func (l *Link) StartStream(total int, first []byte) (*Call, error) {
	if total > compat.MaxMessageSize || len(first) > total {
		return nil, fmt.Errorf("streamed request of %d bytes (first piece %d)", total, len(first))
	}
	c, err := l.register()
	if err != nil {
		return nil, err
	}
	var hdr [compat.HeaderSize + 4]byte
	compat.PutHeader(hdr[:], compat.Header{Type: msgReqBegin, Length: uint32(4 + len(first)), ID: c.id})
	binary.BigEndian.PutUint32(hdr[compat.HeaderSize:], uint32(total))
	if err := l.out.send(true, hdr[:], first); err != nil {
		return l.unsent(c, err)
	}
	return c, nil
}

// SendMore sends the next piece of a streamed request. A failed write
// closes the link: the call is then failed by the link's reader.
func (l *Link) SendMore(c *Call, piece []byte) error {
	var hdr [compat.HeaderSize]byte
	compat.PutHeader(hdr[:], compat.Header{Type: msgReqMore, Length: uint32(len(piece)), ID: c.id})
	if err := l.out.send(false, hdr[:], piece); err != nil {
		_ = l.conn.Close()
		return fmt.Errorf("%w: %v", ErrLinkClosed, err)
	}
	return nil
}
