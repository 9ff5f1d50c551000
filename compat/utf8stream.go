package compat

import "unicode/utf8"

// utf8Stream validates a string that arrives in runs, reporting the first
// bad sequence exactly as pyUTF8Error would for the whole string.
type utf8Stream struct {
	n     int // string length
	pos   int // string position of the next byte fed
	carry [4]byte
	nc    int
	head  []byte // the string's first 20 bytes (the error's raw_data)
	bad   string // pyUTF8Error's text for the first bad sequence
}

func (u *utf8Stream) feed(p []byte) error {
	if len(u.head) < 20 {
		u.head = append(u.head, p[:min(len(p), 20-len(u.head))]...)
	}
	start := u.pos - u.nc // string position of the first byte examined
	u.pos += len(p)
	last := u.pos == u.n
	// Complete a sequence split across runs first.
	for u.nc > 0 && len(p) > 0 {
		u.carry[u.nc] = p[0]
		u.nc++
		p = p[1:]
		size, bad, _ := utf8Step(u.carry[:u.nc])
		if bad == 0 {
			start += size
			copy(u.carry[:], u.carry[size:u.nc])
			u.nc -= size
			continue
		}
		if bad == u.nc && u.nc < 4 && (len(p) > 0 || !last) {
			continue // still incomplete: "unexpected end" only at the very end
		}
		return u.fail(u.carry[:u.nc], start, last && len(p) == 0)
	}
	if u.nc > 0 {
		if last {
			return u.fail(u.carry[:u.nc], start, true)
		}
		return nil
	}
	// Fast path: whole runes up to a possibly split tail.
	cut := len(p)
	for i := len(p) - 1; i >= max(0, len(p)-3); i-- {
		if c := p[i]; c >= 0xC0 {
			if need := seqLen(c); need > len(p)-i {
				cut = i
			}
			break
		} else if c < 0x80 {
			break
		}
	}
	if !last && utf8.Valid(p[:cut]) {
		u.nc = copy(u.carry[:], p[cut:])
		return nil
	}
	if last && utf8.Valid(p) {
		return nil
	}
	return u.fail(p, start, last)
}

// seqLen is the length of the UTF-8 sequence a lead byte announces.
func seqLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	}
	return 2
}

// fail finds the first bad sequence in b (which starts at string position
// start; end: b reaches the end of the string). Bytes of a sequence cut by
// the end of a run that is not the string's end are kept for later.
func (u *utf8Stream) fail(b []byte, start int, end bool) error {
	for i := 0; i < len(b); {
		size, bad, reason := utf8Step(b[i:])
		if bad == 0 {
			i += size
			continue
		}
		if bad == len(b)-i && !end && bad < 4 && reason == "unexpected end of data" {
			u.nc = copy(u.carry[:], b[i:])
			return nil
		}
		u.bad = pyUTF8ErrorAt(b[i], start+i, bad, reason)
		return errBadUTF8
	}
	u.nc = 0
	return nil
}

func (u *utf8Stream) finish() error {
	if u.nc > 0 {
		return u.fail(u.carry[:u.nc], u.pos-u.nc, true)
	}
	return nil
}
