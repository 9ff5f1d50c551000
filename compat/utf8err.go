package compat

import "fmt"

// pyUTF8Error returns str() of the UnicodeDecodeError CPython raises for
// bytes(b).decode("utf-8"), which gunicorn puts after "Invalid UTF-8 in
// string: ". b must be invalid UTF-8.
//
// It follows CPython's strict decoder (Objects/stringlib/codecs.h,
// utf8_decode, and unicode_decode_utf8): the first bad sequence is
// reported as
//
//   - "invalid start byte": a byte that cannot start a sequence (1 byte);
//   - "invalid continuation byte": the lead byte and the valid continuation
//     bytes before the first bad one (1-3 bytes), where CPython also counts
//     overlong forms, surrogates and code points above U+10FFFF as a bad
//     second byte;
//   - "unexpected end of data": a sequence valid so far that the data ends
//     in the middle of (from its lead byte to the end).
//
// A one-byte range reads "can't decode byte 0xXX in position N", a longer
// one "can't decode bytes in position N-M".
func pyUTF8Error(b []byte) string {
	for i := 0; i < len(b); {
		size, bad, reason := utf8Step(b[i:])
		if bad == 0 {
			i += size
			continue
		}
		return pyUTF8ErrorAt(b[i], i, bad, reason)
	}
	return "'utf-8' codec can't decode: no error found" // unreachable for invalid input
}

// pyUTF8ErrorAt formats a bad sequence of bad bytes at position pos whose
// first byte is lead.
func pyUTF8ErrorAt(lead byte, pos, bad int, reason string) string {
	if bad == 1 {
		return fmt.Sprintf("'utf-8' codec can't decode byte 0x%02x in position %d: %s", lead, pos, reason)
	}
	return fmt.Sprintf("'utf-8' codec can't decode bytes in position %d-%d: %s", pos, pos+bad-1, reason)
}

// utf8Step looks at the sequence starting s[0]. It returns the size of a
// valid sequence (bad == 0), or the length of the erroneous range and
// CPython's reason for it.
func utf8Step(s []byte) (size, bad int, reason string) {
	const (
		invalidStart = "invalid start byte"
		invalidCont  = "invalid continuation byte"
		endOfData    = "unexpected end of data"
	)
	cont := func(c byte) bool { return c >= 0x80 && c <= 0xBF }
	ch := s[0]
	switch {
	case ch < 0x80:
		return 1, 0, ""
	case ch < 0xC2: // continuation byte or overlong 2-byte lead
		return 0, 1, invalidStart
	case ch < 0xE0:
		if len(s) < 2 {
			return 0, len(s), endOfData
		}
		if !cont(s[1]) {
			return 0, 1, invalidCont
		}
		return 2, 0, ""
	case ch < 0xF0:
		// E0 needs a second byte >= A0 (else overlong); ED one < A0 (else
		// a surrogate). CPython reports both at the second byte.
		badSecond := func(c2 byte) bool {
			return !cont(c2) || (ch == 0xE0 && c2 < 0xA0) || (ch == 0xED && c2 >= 0xA0)
		}
		if len(s) < 3 {
			if len(s) >= 2 && badSecond(s[1]) {
				return 0, 1, invalidCont
			}
			return 0, len(s), endOfData
		}
		if badSecond(s[1]) {
			return 0, 1, invalidCont
		}
		if !cont(s[2]) {
			return 0, 2, invalidCont
		}
		return 3, 0, ""
	case ch < 0xF5:
		// F0 needs a second byte >= 90 (else overlong); F4 one < 90 (else
		// above U+10FFFF).
		badSecond := func(c2 byte) bool {
			return !cont(c2) || (ch == 0xF0 && c2 < 0x90) || (ch == 0xF4 && c2 >= 0x90)
		}
		if len(s) < 4 {
			if len(s) >= 2 && badSecond(s[1]) {
				return 0, 1, invalidCont
			}
			if len(s) >= 3 && !cont(s[2]) {
				return 0, 2, invalidCont
			}
			return 0, len(s), endOfData
		}
		if badSecond(s[1]) {
			return 0, 1, invalidCont
		}
		if !cont(s[2]) {
			return 0, 2, invalidCont
		}
		if !cont(s[3]) {
			return 0, 3, invalidCont
		}
		return 4, 0, ""
	default: // F5..FF
		return 0, 1, invalidStart
	}
}
