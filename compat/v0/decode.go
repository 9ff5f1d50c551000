package v0

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/gdirty/gdirty/compat"
)

// BigInt is a JSON integer outside int64, kept as its decimal digits
// (Python ints are unbounded; str() and json.dumps print the digits).
type BigInt string

// maxIntDigits is CPython's default int_max_str_digits: json.loads fails
// on longer integers.
const maxIntDigits = 4300

// parser validates JSON exactly as Python's json.loads (C scanner, strict)
// accepts it, optionally building values. Positions in messages are
// character offsets, as in Python's JSONDecodeError.
type parser struct {
	b []byte
	i int
}

// syntaxErr builds "msg: line L column C (char N)" for byte offset pos.
func (p *parser) syntaxErr(msg string, pos int) error {
	doc := p.b[:pos]
	char := utf8.RuneCount(doc)
	line := bytes.Count(doc, []byte{'\n'}) + 1
	col := char + 1
	if nl := bytes.LastIndexByte(doc, '\n'); nl >= 0 {
		col = utf8.RuneCount(doc[nl+1:]) + 1
	}
	return fmt.Errorf("%s: line %d column %d (char %d)", msg, line, col, char)
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) hasPrefix(s string) bool {
	return len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s
}

// value parses one value at p.i (no leading whitespace). depth counts the
// containers it is inside.
func (p *parser) value(build bool, depth int) (any, error) {
	if p.i >= len(p.b) {
		return nil, p.syntaxErr("Expecting value", p.i)
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str(build)
	case c == '{':
		return p.object(build, depth+1)
	case c == '[':
		return p.array(build, depth+1)
	case c == 'n' && p.hasPrefix("null"):
		p.i += 4
		return nil, nil
	case c == 't' && p.hasPrefix("true"):
		p.i += 4
		return true, nil
	case c == 'f' && p.hasPrefix("false"):
		p.i += 5
		return false, nil
	case c == 'N' && p.hasPrefix("NaN"):
		p.i += 3
		return nan(), nil
	case c == 'I' && p.hasPrefix("Infinity"):
		p.i += 8
		return inf(1), nil
	case c == '-' && p.hasPrefix("-Infinity"):
		p.i += 9
		return inf(-1), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(build)
	}
	return nil, p.syntaxErr("Expecting value", p.i)
}

func (p *parser) enter(depth int) error {
	if depth > compat.MaxDepth {
		return fmt.Errorf("nesting deeper than %d levels at char %d", compat.MaxDepth, utf8.RuneCount(p.b[:p.i]))
	}
	return nil
}

func (p *parser) object(build bool, depth int) (any, error) {
	if err := p.enter(depth); err != nil {
		return nil, err
	}
	p.i++ // '{'
	var d *compat.Dict
	if build {
		d = &compat.Dict{}
	}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return d, nil
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, p.syntaxErr("Expecting property name enclosed in double quotes", p.i)
		}
		k, err := p.str(build)
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, p.syntaxErr("Expecting ':' delimiter", p.i)
		}
		p.i++
		p.ws()
		v, err := p.value(build, depth)
		if err != nil {
			return nil, err
		}
		if build {
			d.Set(k.(string), v) // a repeated key keeps its place, last value wins
		}
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return d, nil
		}
		if p.i >= len(p.b) || p.b[p.i] != ',' {
			return nil, p.syntaxErr("Expecting ',' delimiter", p.i)
		}
		p.i++
		p.ws()
	}
}

func (p *parser) array(build bool, depth int) (any, error) {
	if err := p.enter(depth); err != nil {
		return nil, err
	}
	p.i++ // '['
	var list []any
	if build {
		list = []any{}
	}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return list, nil
	}
	for {
		v, err := p.value(build, depth)
		if err != nil {
			return nil, err
		}
		if build {
			list = append(list, v)
		}
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return list, nil
		}
		if p.i >= len(p.b) || p.b[p.i] != ',' {
			return nil, p.syntaxErr("Expecting ',' delimiter", p.i)
		}
		p.i++
		p.ws()
	}
}

// number follows Python's NUMBER_RE: -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?
// A '.' or 'e' not followed by digits ends the number before it.
func (p *parser) number(build bool) (any, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.skipDigits()
	default:
		return nil, p.syntaxErr("Expecting value", start)
	}
	intEnd := p.i
	isFloat := false
	if p.i+1 < len(p.b) && p.b[p.i] == '.' && isDigit(p.b[p.i+1]) {
		p.i++
		p.skipDigits()
		isFloat = true
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		j := p.i + 1
		if j < len(p.b) && (p.b[j] == '+' || p.b[j] == '-') {
			j++
		}
		if j < len(p.b) && isDigit(p.b[j]) {
			p.i = j
			p.skipDigits()
			isFloat = true
		}
	}
	text := string(p.b[start:p.i])
	if isFloat {
		if !build {
			return nil, nil
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !isRange(err) {
			return nil, fmt.Errorf("bad number %q: %w", text, err)
		}
		return f, nil // out of range: ±Inf or 0, as Python's float()
	}
	if n := intEnd - digits; n > maxIntDigits {
		return nil, pyError(fmt.Sprintf("Exceeds the limit (%d digits) for integer string conversion: value has %d digits; use sys.set_int_max_str_digits() to increase the limit", maxIntDigits, n))
	}
	if !build {
		return nil, nil
	}
	if v, err := strconv.ParseInt(text, 10, 64); err == nil {
		return v, nil
	}
	return BigInt(text), nil
}

func (p *parser) skipDigits() {
	for p.i < len(p.b) && isDigit(p.b[p.i]) {
		p.i++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// pyError is an error whose text is Python's exception message, verbatim
// (capitalised as Python writes it).
type pyError string

func (e pyError) Error() string { return string(e) }
