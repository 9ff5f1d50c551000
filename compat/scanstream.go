package compat

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// StreamScan validates a REQUEST payload as it is read from the client,
// piece by piece, so that a large request can be forwarded to a worker
// while it arrives instead of being held whole. Every byte it consumes is
// handed to the Emit callback in pieces, in order; it reports exactly the
// error ScanRequest would report for the whole payload (same kind,
// message and raw_data window), and the same route.
//
// While scanning, EarlyRoute gives the first top-level app_path as soon as
// it has been read, so the caller can pick a worker before the rest of the
// payload has arrived.
type StreamScan struct {
	r     *bufio.Reader
	total int
	off   int // payload bytes consumed

	// Emit receives consumed bytes; the slice is only valid during the call.
	emit  func([]byte) error
	piece []byte

	head []byte  // the payload's first bytes (window(payload, 0))
	back [5]byte // the last bytes consumed (raw(back) looks 5 back at most)
	nb   int

	capture    *[]byte // collects the value being read, up to keepMax
	captureCap bool    // the value outgrew keepMax

	early      []byte // first top-level app_path (a str)
	earlyKnown bool
	discard    bool // after an error: consume without emitting
}

// keepMax bounds the bytes kept of app_path / action values and of dict
// keys; longer ones are not used for routing early.
const keepMax = 64 << 10

// StreamReadError is a failure to read the payload from the client (the
// connection is unusable), as opposed to a protocol error in its content.
type StreamReadError struct{ Err error }

func (e *StreamReadError) Error() string { return e.Err.Error() }
func (e *StreamReadError) Unwrap() error { return e.Err }

// NewStreamScan scans the total payload bytes that follow a REQUEST
// header on r, calling emit with pieces of at most pieceSize bytes.
func NewStreamScan(r *bufio.Reader, total, pieceSize int, emit func([]byte) error) *StreamScan {
	return &StreamScan{r: r, total: total, emit: emit, piece: make([]byte, 0, pieceSize)}
}

// EarlyRoute returns the first top-level app_path, once read, if it is a
// str of at most keepMax bytes.
func (s *StreamScan) EarlyRoute() (string, bool) { return string(s.early), s.earlyKnown }

// Scan consumes the whole payload and returns its route, or the error
// ScanRequest would give. On a protocol error the rest of the payload is
// still consumed (and dropped, not emitted), so the connection stays in
// step. Read failures come back as *StreamReadError; an Emit failure is
// returned as is. The last piece is emitted by Finish.
func (s *StreamScan) Scan() (RequestRoute, error) {
	rr, err := s.scan()
	var pe *ProtocolError
	if errors.As(err, &pe) {
		// The rest is read and dropped: nothing more goes to the worker.
		s.discard = true
		s.piece = s.piece[:0]
		if derr := s.consume(s.total-s.off, nil); derr != nil {
			return rr, derr
		}
		return rr, err
	}
	return rr, err
}

// Finish emits the last piece. It is separate from Scan so that the
// caller can still abort a forwarded request after looking at the route:
// until Finish the receiver has not got the whole payload.
func (s *StreamScan) Finish() error { return s.flush() }

func (s *StreamScan) flush() error {
	if len(s.piece) == 0 || s.discard {
		s.piece = s.piece[:0]
		return nil
	}
	err := s.emit(s.piece)
	s.piece = s.piece[:0]
	return err
}

// consume reads n payload bytes, passing each contiguous run to inspect
// (if set) and to the pieces.
func (s *StreamScan) consume(n int, inspect func([]byte) error) error {
	for n > 0 {
		if len(s.piece) == cap(s.piece) {
			if err := s.flush(); err != nil {
				return err
			}
		}
		room := s.piece[len(s.piece):min(cap(s.piece), len(s.piece)+n)]
		got, err := s.r.Read(room)
		if got > 0 {
			p := room[:got]
			s.piece = s.piece[:len(s.piece)+got]
			s.note(p)
			n -= got
			if inspect != nil {
				if ierr := inspect(p); ierr != nil {
					return ierr
				}
			}
		}
		if err != nil && n > 0 {
			if errors.Is(err, io.EOF) {
				err = protoErr(KindTruncated, nil, "Incomplete payload: got %d bytes, expected %d", s.off, s.total)
			}
			return &StreamReadError{Err: fmt.Errorf("read request payload: %w", err)}
		}
	}
	return nil
}

// note records consumed bytes: offset, head, look-behind, capture.
func (s *StreamScan) note(p []byte) {
	if len(s.head) < 20 {
		s.head = append(s.head, p[:min(len(p), 20-len(s.head))]...)
	}
	s.off += len(p)
	for _, c := range p[max(0, len(p)-len(s.back)):] {
		if s.nb < len(s.back) {
			s.back[s.nb] = c
			s.nb++
		} else {
			copy(s.back[:], s.back[1:])
			s.back[len(s.back)-1] = c
		}
	}
	if s.capture != nil && !s.captureCap {
		if len(*s.capture)+len(p) > keepMax {
			s.captureCap = true
		} else {
			*s.capture = append(*s.capture, p...)
		}
	}
}

func (s *StreamScan) need(n int) bool { return s.total-s.off >= n }

// raw is decoder.raw: payload[off-back : off+20], read ahead without
// consuming.
func (s *StreamScan) raw(back int) []byte {
	back = min(back, s.nb)
	out := append(make([]byte, 0, back+20), s.back[s.nb-back:s.nb]...)
	return append(out, s.peek(20)...)
}

// peek returns up to n bytes ahead (never past the payload) without
// consuming them; a client that stops short yields what it sent.
func (s *StreamScan) peek(n int) []byte {
	n = min(n, s.total-s.off)
	b, _ := s.r.Peek(n)
	return append(make([]byte, 0, len(b)), b...)
}

func (s *StreamScan) fixed(n int) ([]byte, error) {
	var buf [8]byte
	i := 0
	err := s.consume(n, func(p []byte) error {
		i += copy(buf[i:], p)
		return nil
	})
	return buf[:n], err
}

func (s *StreamScan) u32() (uint32, error) {
	b, err := s.fixed(4)
	if err != nil {
		return 0, err
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
}

func (s *StreamScan) peekByte() (byte, error) {
	b := s.peek(1)
	if len(b) == 0 {
		// need(1) held, so the client closed early.
		err := s.consume(1, nil)
		if err == nil {
			err = &StreamReadError{Err: io.ErrUnexpectedEOF}
		}
		return 0, err
	}
	return b[0], nil
}

func (s *StreamScan) value(depth int) error {
	if !s.need(1) {
		return protoErr(KindTruncated, s.raw(0), "Truncated TLV data: no type byte")
	}
	tb, err := s.fixed(1)
	if err != nil {
		return err
	}
	switch t := tb[0]; t {
	case TypeNone:
		return nil
	case TypeBool:
		if !s.need(1) {
			return protoErr(KindTruncated, s.raw(1), "Truncated TLV data: missing bool value")
		}
		return s.consume(1, nil)
	case TypeInt64:
		if !s.need(8) {
			return protoErr(KindTruncated, s.raw(1), "Truncated TLV data: incomplete int64")
		}
		return s.consume(8, nil)
	case TypeFloat64:
		if !s.need(8) {
			return protoErr(KindTruncated, s.raw(1), "Truncated TLV data: incomplete float64")
		}
		return s.consume(8, nil)
	case TypeBytes:
		return s.sized("bytes", MaxBytesSize)
	case TypeString:
		return s.sized("string", MaxStringSize)
	case TypeList:
		n, err := s.count("list", MaxListSize, depth)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := s.value(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case TypeDict:
		n, err := s.count("dict", MaxDictSize, depth)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := s.key(depth + 1); err != nil {
				return err
			}
			if err := s.value(depth + 1); err != nil {
				return err
			}
		}
		return nil
	default:
		return protoErr(KindUnknownTLVType, s.raw(1), "Unknown TLV type code: 0x%02x", t)
	}
}

// key reads a dict key: a malformed key reports its own error, any other
// non-str key is refused by type (as decoder.dict).
func (s *StreamScan) key(depth int) error {
	if !s.need(1) {
		return protoErr(KindTruncated, s.raw(0), "Truncated TLV data: no type byte")
	}
	kt, err := s.peekByte()
	if err != nil {
		return err
	}
	if kt != TypeString {
		if err := s.value(depth); err != nil {
			return err
		}
		return protoErr(KindNonStringKey, nil, "Dict key must be string, got %s", pyTypeName(kt))
	}
	return s.value(depth)
}

func (s *StreamScan) sized(what string, limit uint32) error {
	if !s.need(4) {
		return protoErr(KindTruncated, s.raw(1), "Truncated TLV data: incomplete %s length", what)
	}
	n32, err := s.u32()
	if err != nil {
		return err
	}
	if n32 > limit {
		noun := "Bytes"
		if what == "string" {
			noun = "String"
		}
		return protoErr(KindTooLarge, nil, "%s too large: %d bytes (max: %d)", noun, n32, limit)
	}
	n := int(n32)
	if !s.need(n) {
		if what == "string" {
			return protoErr(KindTruncated, s.raw(5), "Truncated TLV data: expected %d bytes for string, got %d", n, s.total-s.off)
		}
		return protoErr(KindTruncated, s.raw(5), "Truncated TLV data: expected %d bytes, got %d", n, s.total-s.off)
	}
	if what != "string" {
		return s.consume(n, nil)
	}
	v := utf8Stream{n: n}
	err = s.consume(n, v.feed)
	if err == nil {
		err = v.finish()
	}
	if err == errBadUTF8 {
		// raw_data is the string's first 20 bytes: those not read yet
		// are next in the stream.
		head := append(v.head, s.peek(min(n, 20)-len(v.head))...)
		return protoErr(KindInvalidUTF8, head, "Invalid UTF-8 in string: %s", v.bad)
	}
	return err
}

// errBadUTF8 stops a string's scan at its first bad sequence.
var errBadUTF8 = errors.New("invalid UTF-8")

func (s *StreamScan) count(what string, limit uint32, depth int) (int, error) {
	if depth >= MaxDepth {
		return 0, protoErr(KindTooDeep, s.raw(1), "Nesting too deep: more than %d levels", MaxDepth)
	}
	if !s.need(4) {
		return 0, protoErr(KindTruncated, s.raw(1), "Truncated TLV data: incomplete %s count", what)
	}
	n, err := s.u32()
	if err != nil {
		return 0, err
	}
	if n > limit {
		noun := "List"
		if what == "dict" {
			noun = "Dict"
		}
		return 0, protoErr(KindTooLarge, nil, "%s too large: %d items (max: %d)", noun, n, limit)
	}
	return int(n), nil
}

// captured reads one value, keeping its encoding if it fits in keepMax.
func (s *StreamScan) captured(depth int) ([]byte, bool, error) {
	var buf []byte
	s.capture, s.captureCap = &buf, false
	err := s.value(depth)
	s.capture = nil
	return buf, !s.captureCap, err
}

// scan is ScanRequest over the stream.
func (s *StreamScan) scan() (RequestRoute, error) {
	var rr RequestRoute
	if s.total == 0 {
		return rr, protoErr(KindMissingField, nil, "Request payload is empty")
	}
	first, err := s.peekByte()
	if err != nil {
		return rr, err
	}
	if first != TypeDict {
		if err := s.value(0); err != nil {
			return rr, err
		}
		if s.off != s.total {
			return rr, protoErr(KindTrailingData, s.peek(20), "Trailing data after TLV: %d bytes", s.total-s.off)
		}
		return rr, protoErr(KindMissingField, s.head, "Request payload must be a dict, got %s", pyTypeName(first))
	}
	if err := s.consume(1, nil); err != nil {
		return rr, err
	}
	n, err := s.count("dict", MaxDictSize, 0)
	if err != nil {
		return rr, err
	}
	haveApp, appComplete := false, false
	var appRaw []byte
	for i := 0; i < n; i++ {
		if !s.need(1) {
			return rr, protoErr(KindTruncated, s.raw(0), "Truncated TLV data: no type byte")
		}
		kt, err := s.peekByte()
		if err != nil {
			return rr, err
		}
		if kt != TypeString {
			if err := s.value(1); err != nil {
				return rr, err
			}
			return rr, protoErr(KindNonStringKey, nil, "Dict key must be string, got %s", pyTypeName(kt))
		}
		key, keyKept, err := s.captured(1)
		if err != nil {
			return rr, err
		}
		name := ""
		if keyKept && len(key) >= 5 {
			name = string(key[5:])
		}
		if name != "app_path" && name != "action" {
			if err := s.value(1); err != nil {
				return rr, err
			}
			continue
		}
		val, kept, err := s.captured(1)
		if err != nil {
			return rr, err
		}
		switch name {
		case "app_path":
			haveApp, appRaw, appComplete = true, val, kept
			rr.AppPath, _ = stringAt(val)
			if !s.earlyKnown && kept && len(val) > 0 && val[0] == TypeString {
				s.early, s.earlyKnown = val[5:], true
			}
		case "action":
			if kept {
				rr.Action, _ = stringAt(val)
			}
		}
	}
	if s.off != s.total {
		return rr, protoErr(KindTrailingData, s.peek(20), "Trailing data after TLV: %d bytes", s.total-s.off)
	}
	if !haveApp || (len(appRaw) > 0 && appRaw[0] == TypeNone) {
		return rr, protoErr(KindMissingField, nil, "Request is missing app_path")
	}
	if !appComplete {
		return RequestRoute{}, ErrAppPathTooLong
	}
	rr.AppIsString = appRaw[0] == TypeString
	if !rr.AppIsString {
		v, err := Decode(appRaw)
		if err != nil {
			return RequestRoute{}, err
		}
		rr.AppValue = v
	}
	return rr, nil
}

// ErrAppPathTooLong: the request's app_path value is longer than a
// streamed scan keeps. No gunicorn app path is anywhere near that long.
var ErrAppPathTooLong = errors.New("app_path value longer than 64 KiB")
