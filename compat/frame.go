package compat

import (
	"errors"
	"fmt"
	"io"
)

// payloadStep bounds how much payload buffer is committed ahead of the bytes
// actually received, so a peer announcing 64 MiB and sending nothing costs
// little memory.
const payloadStep = 256 * 1024

// ReadFrame reads one frame. buf is reused for the payload when large
// enough; the returned payload aliases it. A clean close before any header
// byte returns io.EOF. On a header that fails validation the raw header is
// still returned, so the caller can answer a known request id.
func ReadFrame(r io.Reader, buf []byte) (Header, []byte, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return h, nil, err
	}
	payload, err := ReadPayload(r, h, buf)
	return h, payload, err
}

// ReadHeader reads and validates one frame header (ReadFrame's first
// half: the caller then reads the payload itself, whole or in pieces).
func ReadHeader(r io.Reader) (Header, error) {
	var hb [HeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return Header{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, protoErr(KindTruncated, hb[:n], "Incomplete header: got %d bytes, expected %d", n, HeaderSize)
		}
		return Header{}, fmt.Errorf("read frame header: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		_, _, raw := RawHeader(hb[:])
		return raw, err
	}
	return h, nil
}

// ReadPayload reads the payload of a frame whose header was read with
// ReadHeader; buf is reused when large enough.
func ReadPayload(r io.Reader, h Header, buf []byte) ([]byte, error) {
	return readPayload(r, int(h.Length), buf)
}

func readPayload(r io.Reader, n int, buf []byte) ([]byte, error) {
	buf, got, err := ReadSized(r, n, buf)
	if err != nil {
		return nil, payloadErr(got, n, err)
	}
	return buf, nil
}

// ReadSized reads exactly n bytes from r into buf (reused when large
// enough). A length announced by a peer is not trusted: the buffer grows
// in steps of at most payloadStep ahead of the bytes that really arrived,
// so a peer announcing 64 MiB and sending nothing costs little. On error
// it returns how many bytes did arrive. Shared by the v1 and v0 readers.
func ReadSized(r io.Reader, n int, buf []byte) ([]byte, int, error) {
	if n == 0 {
		return buf[:0], 0, nil
	}
	if cap(buf) >= n {
		buf = buf[:n]
		got, err := io.ReadFull(r, buf)
		return buf, got, err
	}
	buf = buf[:0]
	for len(buf) < n {
		next := min(n, len(buf)+max(len(buf), payloadStep))
		if cap(buf) < next {
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		got, err := io.ReadFull(r, buf[len(buf):next])
		if err != nil {
			return nil, len(buf) + got, err
		}
		buf = buf[:next]
	}
	return buf, n, nil
}

func payloadErr(got, want int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return protoErr(KindTruncated, nil, "Incomplete payload: got %d bytes, expected %d", got, want)
	}
	return fmt.Errorf("read frame payload: %w", err)
}

// AppendFrame appends a complete frame (header and payload) to dst.
func AppendFrame(dst []byte, t MsgType, id uint64, payload []byte) []byte {
	dst = AppendHeader(dst, Header{Type: t, Length: uint32(len(payload)), ID: id})
	return append(dst, payload...)
}
