package compat

import (
	"encoding/binary"
)

// Frame layout: ">2sBBIQ" — magic "GD", version, message type, payload
// length (uint32), request id (uint64), all big-endian.
const (
	HeaderSize     = 16
	Version        = 0x01
	MaxMessageSize = 64 * 1024 * 1024
)

var magic = [2]byte{'G', 'D'}

// MsgType is the one-byte message type of a frame.
type MsgType uint8

const (
	MsgRequest  MsgType = 0x01
	MsgResponse MsgType = 0x02
	MsgError    MsgType = 0x03
	MsgChunk    MsgType = 0x04
	MsgEnd      MsgType = 0x05
	MsgStash    MsgType = 0x10
	MsgStatus   MsgType = 0x11
	MsgManage   MsgType = 0x12
)

var msgTypeNames = map[MsgType]string{
	MsgRequest:  "request",
	MsgResponse: "response",
	MsgError:    "error",
	MsgChunk:    "chunk",
	MsgEnd:      "end",
	MsgStash:    "stash",
	MsgStatus:   "status",
	MsgManage:   "manage",
}

// String returns gunicorn's name for the type ("request", "chunk", ...).
func (t MsgType) String() string {
	if s, ok := msgTypeNames[t]; ok {
		return s
	}
	return "unknown"
}

// Known reports whether gunicorn's protocol defines t.
func (t MsgType) Known() bool { _, ok := msgTypeNames[t]; return ok }

// Header is a decoded frame header.
type Header struct {
	Type   MsgType
	Length uint32
	ID     uint64
}

// PutHeader writes h into b, which must hold HeaderSize bytes.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	b[0], b[1] = magic[0], magic[1]
	b[2] = Version
	b[3] = byte(h.Type)
	binary.BigEndian.PutUint32(b[4:8], h.Length)
	binary.BigEndian.PutUint64(b[8:16], h.ID)
}

// AppendHeader appends the encoded header to dst.
func AppendHeader(dst []byte, h Header) []byte {
	var b [HeaderSize]byte
	PutHeader(b[:], h)
	return append(dst, b[:]...)
}

// RawHeader splits a header without validating it. Callers use it to learn
// the request id of a frame whose header failed validation.
func RawHeader(b []byte) (magicOK, versionOK bool, h Header) {
	if len(b) < HeaderSize {
		return false, false, Header{}
	}
	return b[0] == magic[0] && b[1] == magic[1], b[2] == Version, Header{
		Type:   MsgType(b[3]),
		Length: binary.BigEndian.Uint32(b[4:8]),
		ID:     binary.BigEndian.Uint64(b[8:16]),
	}
}

// ParseHeader validates and decodes a 16-byte header exactly as gunicorn's
// BinaryProtocol.decode_header does (same checks, same order, same texts).
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, protoErr(KindTruncated, window(b, 0), "Header too short: %d bytes, expected %d", len(b), HeaderSize)
	}
	magicOK, versionOK, h := RawHeader(b)
	if !magicOK {
		return Header{}, protoErr(KindBadMagic, window(b, 0), "Invalid magic: %s, expected b'GD'", PyBytesRepr(b[:2]))
	}
	if !versionOK {
		return Header{}, protoErr(KindBadVersion, window(b, 0), "Unsupported protocol version: %d, expected %d", b[2], Version)
	}
	if !h.Type.Known() {
		return Header{}, protoErr(KindUnknownMessageType, window(b, 0), "Unknown message type: 0x%02x", uint8(h.Type))
	}
	if h.Length > MaxMessageSize {
		return Header{}, protoErr(KindMessageTooLarge, nil, "Message too large: %d bytes (max: %d)", h.Length, MaxMessageSize)
	}
	return h, nil
}
