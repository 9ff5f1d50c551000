package v0

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/gdirty/gdirty/compat"
)

// HeaderSize is the length prefix: struct "!I".
const HeaderSize = 4

// MaxMessageSize is gunicorn 25.0's DirtyProtocol.MAX_MESSAGE_SIZE.
const MaxMessageSize = 64 * 1024 * 1024

// ReadFrame reads one length-prefixed message and returns its JSON body.
// buf is reused for the body when large enough; the result aliases it.
// A clean close before any byte returns io.EOF. Every other error leaves
// the stream out of step, so the caller must close the connection. An
// empty body (length 0) is returned without error: the stream is still in
// step and ScanRequest reports it.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hb [HeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, protoErr(compat.KindTruncated, hb[:n],
				"Incomplete header: got %d bytes, expected %d", n, HeaderSize)
		}
		return nil, fmt.Errorf("read v0 frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(hb[:])
	// Checked before anything is allocated for the body.
	if n > MaxMessageSize {
		return nil, protoErr(compat.KindMessageTooLarge, nil,
			"Message too large: %d bytes (max: %d)", n, MaxMessageSize)
	}
	return readBody(r, int(n), buf)
}

func readBody(r io.Reader, n int, buf []byte) ([]byte, error) {
	buf, got, err := compat.ReadSized(r, n, buf)
	if err != nil {
		return nil, bodyErr(got, n, err)
	}
	return buf, nil
}

func bodyErr(got, want int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return protoErr(compat.KindTruncated, nil, "Incomplete message: got %d bytes, expected %d", got, want)
	}
	return fmt.Errorf("read v0 frame body: %w", err)
}

// PutLength writes the length prefix for a body of n bytes into b.
func PutLength(b []byte, n int) { binary.BigEndian.PutUint32(b, uint32(n)) }

// AppendFrame appends the length prefix and body to dst.
func AppendFrame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// maxRaw is gunicorn's cap on raw_data (raw_data[:100].hex()).
const maxRaw = 100

func protoErr(kind compat.ErrorKind, raw []byte, format string, args ...any) *compat.ProtocolError {
	pe := &compat.ProtocolError{Kind: kind, Message: fmt.Sprintf(format, args...)}
	if raw != nil {
		pe.Raw = append([]byte(nil), raw[:min(len(raw), maxRaw)]...)
	}
	return pe
}
