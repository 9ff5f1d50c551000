package compat

import (
	"errors"
	"fmt"
)

// ErrorKind classifies a malformed frame or TLV value so callers can branch
// (close the connection, answer with DirtyProtocolError, count in metrics).
type ErrorKind int

const (
	KindBadMagic ErrorKind = iota + 1
	KindBadVersion
	KindUnknownMessageType
	KindMessageTooLarge
	KindTruncated
	KindTrailingData
	KindUnknownTLVType
	KindTooLarge
	KindTooDeep
	KindInvalidUTF8
	KindNonStringKey
	KindUnsupportedType
	KindMissingField
)

var kindNames = map[ErrorKind]string{
	KindBadMagic:           "bad magic",
	KindBadVersion:         "bad version",
	KindUnknownMessageType: "unknown message type",
	KindMessageTooLarge:    "message too large",
	KindTruncated:          "truncated",
	KindTrailingData:       "trailing data",
	KindUnknownTLVType:     "unknown TLV type",
	KindTooLarge:           "value too large",
	KindTooDeep:            "nesting too deep",
	KindInvalidUTF8:        "invalid UTF-8",
	KindNonStringKey:       "non-string dict key",
	KindUnsupportedType:    "unsupported type",
	KindMissingField:       "missing field",
}

func (k ErrorKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ProtocolError is returned for every malformed input. Message mirrors the
// text gunicorn's DirtyProtocolError would carry for the same input, so it
// can be sent to a gunicorn client unchanged.
type ProtocolError struct {
	Kind    ErrorKind
	Message string
	// Raw holds the bytes around the offending position that gunicorn's
	// decoder attaches as "raw_data" (hex encoded on the wire), in the same
	// window; nil when gunicorn attaches none, empty when it attaches "".
	Raw []byte
}

func (e *ProtocolError) Error() string { return "dirty protocol: " + e.Message }

// maxRaw is gunicorn's cap on raw_data (raw_data[:100].hex()).
const maxRaw = 100

func protoErr(kind ErrorKind, raw []byte, format string, args ...any) *ProtocolError {
	pe := &ProtocolError{Kind: kind, Message: fmt.Sprintf(format, args...)}
	if raw != nil {
		pe.Raw = append(make([]byte, 0, min(len(raw), maxRaw)), raw[:min(len(raw), maxRaw)]...)
	}
	return pe
}

// window is gunicorn's data[from:from+20].
func window(data []byte, from int) []byte {
	return data[from:min(from+20, len(data))]
}

// IsKind reports whether err is a ProtocolError of the given kind.
func IsKind(err error, kind ErrorKind) bool {
	var pe *ProtocolError
	return errors.As(err, &pe) && pe.Kind == kind
}
