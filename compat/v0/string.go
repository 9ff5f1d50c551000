package v0

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// str parses a string at p.i ('"'). Built strings are UTF-8, except that a
// lone surrogate from a \uXXXX escape (which Python keeps as a code point)
// is stored as its 3-byte WTF-8 form; the encoder writes it back as
// \udXXX, as json.dumps does.
func (p *parser) str(build bool) (any, error) {
	start := p.i
	p.i++
	var out []byte
	runStart := p.i
	for {
		if p.i >= len(p.b) {
			return nil, p.syntaxErr("Unterminated string starting at", start)
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			if build {
				out = append(out, p.b[runStart:p.i]...)
			}
			p.i++
			if !build {
				return nil, nil
			}
			return string(out), nil
		case c == '\\':
			if build {
				out = append(out, p.b[runStart:p.i]...)
			}
			var err error
			out, err = p.escape(out, build)
			if err != nil {
				return nil, err
			}
			runStart = p.i
		case c < 0x20:
			return nil, p.syntaxErr("Invalid control character at", p.i)
		default:
			p.i++
		}
	}
}

// escape decodes the escape at p.i ('\\').
func (p *parser) escape(out []byte, build bool) ([]byte, error) {
	if p.i+1 >= len(p.b) {
		return nil, p.syntaxErr("Unterminated string starting at", p.i)
	}
	e := p.b[p.i+1]
	if r, ok := simpleEscape(e); ok {
		p.i += 2
		return append(out, r), nil
	}
	if e != 'u' {
		return nil, p.syntaxErr("Invalid \\escape", p.i)
	}
	u, err := p.hex4(p.i + 2)
	if err != nil {
		return nil, err
	}
	p.i += 6
	if u >= 0xd800 && u <= 0xdbff && p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
		if lo, err := p.hex4(p.i + 2); err == nil && lo >= 0xdc00 && lo <= 0xdfff {
			p.i += 6
			if build {
				out = utf8.AppendRune(out, 0x10000+(u-0xd800)<<10+(lo-0xdc00))
			}
			return out, nil
		} else if err != nil {
			return nil, err
		}
	}
	if !build {
		return out, nil
	}
	if u >= 0xd800 && u <= 0xdfff {
		return append(out, 0xe0|byte(u>>12), 0x80|byte(u>>6)&0x3f, 0x80|byte(u)&0x3f), nil
	}
	return utf8.AppendRune(out, u), nil
}

func (p *parser) hex4(at int) (rune, error) {
	if at+4 > len(p.b) {
		return 0, p.syntaxErr("Invalid \\uXXXX escape", at-1)
	}
	var v rune
	for _, c := range p.b[at : at+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, p.syntaxErr("Invalid \\uXXXX escape", at-1)
		}
		v = v<<4 | rune(d)
	}
	return v, nil
}

func simpleEscape(e byte) (byte, bool) {
	switch e {
	case '"', '\\', '/':
		return e, true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	}
	return 0, false
}

func nan() float64      { return math.NaN() }
func inf(s int) float64 { return math.Inf(s) }

func isRange(err error) bool { return errors.Is(err, strconv.ErrRange) }
