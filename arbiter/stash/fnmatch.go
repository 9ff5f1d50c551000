package stash

import (
	"fmt"
	"unicode/utf8"
)

// Python's fnmatch, as gunicorn's arbiter uses it for keys(pattern=):
// fnmatch.fnmatch(str(key), pattern). On POSIX os.path.normcase is the
// identity, so this is fnmatchcase: case-sensitive, and `*` matches any run
// of characters including '/' and newlines (it is not path.Match).
//
// CompilePattern ports fnmatch.translate (CPython 3.11) step by step,
// including its quirks: an unterminated '[' is a literal; ']' right after
// '[' or '[!' belongs to the set; '-' ranges are split into chunks and
// reversed ranges are dropped; "[!]" style empty sets never match and a
// bare "[!" set matches any character. The character set translate emits
// is then read the way Python's re parser reads it. Matching is the
// classic linear glob walk: every token but '*' matches exactly one code
// point, which is what translate's regex does (its atomic groups only
// prune backtracking that cannot change the outcome).

type tokKind uint8

const (
	tokLit   tokKind = iota // one literal code point
	tokAny                  // '?' or an always-true set
	tokNever                // an empty set: matches nothing
	tokSet                  // a character set
	tokStar                 // '*'
)

type token struct {
	kind tokKind
	r    rune
	set  *charSet
}

type charSet struct {
	negate bool
	items  []runeRange // single characters are lo == hi
}

type runeRange struct{ lo, hi rune }

func (s *charSet) has(r rune) bool {
	in := false
	for _, it := range s.items {
		if it.lo <= r && r <= it.hi {
			in = true
			break
		}
	}
	return in != s.negate
}

func (t *token) matches(r rune) bool {
	switch t.kind {
	case tokLit:
		return r == t.r
	case tokAny:
		return true
	case tokSet:
		return t.set.has(r)
	}
	return false
}

// Pattern is a compiled fnmatch pattern.
type Pattern struct {
	toks []token
}

// FnMatch reports whether name matches pattern as Python's
// fnmatch.fnmatch(name, pattern) does on POSIX.
func FnMatch(name, pattern string) (bool, error) {
	p, err := CompilePattern(pattern)
	if err != nil {
		return false, err
	}
	return p.Match(name), nil
}

// CompilePattern translates pattern the way fnmatch.translate does. The
// error case mirrors an exception Python would raise while compiling; no
// pattern is known to reach it, it exists so that a missed corner becomes
// an error answer rather than a wrong match.
func CompilePattern(pattern string) (*Pattern, error) {
	pat := []rune(pattern)
	var res []token
	i, n := 0, len(pat)
	for i < n {
		c := pat[i]
		i++
		switch c {
		case '*':
			if len(res) == 0 || res[len(res)-1].kind != tokStar {
				res = append(res, token{kind: tokStar})
			}
		case '?':
			res = append(res, token{kind: tokAny})
		case '[':
			j := i
			if j < n && pat[j] == '!' {
				j++
			}
			if j < n && pat[j] == ']' {
				j++
			}
			for j < n && pat[j] != ']' {
				j++
			}
			if j >= n {
				res = append(res, token{kind: tokLit, r: '['})
				continue
			}
			tok, err := translateSet(pat, i, j)
			if err != nil {
				return nil, err
			}
			res = append(res, tok)
			i = j + 1
		default:
			res = append(res, token{kind: tokLit, r: c})
		}
	}
	return &Pattern{toks: res}, nil
}

// translateSet builds the set for pat[i:j] (the text between '[' and ']').
func translateSet(pat []rune, i, j int) (token, error) {
	var stuff []rune // the regex source translate puts between [ and ]
	if !containsRune(pat[i:j], '-') {
		stuff = escapeRunes(nil, pat[i:j], false)
	} else {
		var chunks [][]rune
		k := i + 1
		if pat[i] == '!' {
			k = i + 2
		}
		for {
			k = findRune(pat, '-', k, j)
			if k < 0 {
				break
			}
			chunks = append(chunks, append([]rune(nil), pat[i:k]...))
			i = k + 1
			k = k + 3
		}
		if chunk := pat[i:j]; len(chunk) > 0 {
			chunks = append(chunks, append([]rune(nil), chunk...))
		} else {
			chunks[len(chunks)-1] = append(chunks[len(chunks)-1], '-')
		}
		// Remove empty ranges -- invalid in RE.
		for k := len(chunks) - 1; k > 0; k-- {
			prev, cur := chunks[k-1], chunks[k]
			if len(prev) == 0 || len(cur) == 0 {
				return token{}, fmt.Errorf("string index out of range")
			}
			if prev[len(prev)-1] > cur[0] {
				merged := append(append([]rune(nil), prev[:len(prev)-1]...), cur[1:]...)
				chunks[k-1] = merged
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
		for ci, ch := range chunks {
			if ci > 0 {
				stuff = append(stuff, '-')
			}
			stuff = escapeRunes(stuff, ch, true)
		}
	}
	// Escape set operations (&&, ~~ and ||).
	var esc []rune
	for _, r := range stuff {
		if r == '&' || r == '~' || r == '|' {
			esc = append(esc, '\\')
		}
		esc = append(esc, r)
	}
	stuff = esc
	switch {
	case len(stuff) == 0:
		return token{kind: tokNever}, nil
	case len(stuff) == 1 && stuff[0] == '!':
		return token{kind: tokAny}, nil
	case stuff[0] == '!':
		stuff[0] = '^'
	case stuff[0] == '^' || stuff[0] == '[':
		stuff = append([]rune{'\\'}, stuff...)
	}
	set, err := parseReSet(stuff)
	if err != nil {
		return token{}, err
	}
	return token{kind: tokSet, set: set}, nil
}

// escapeRunes appends src with '\' doubled and, if hyphens, '-' escaped.
func escapeRunes(dst, src []rune, hyphens bool) []rune {
	for _, r := range src {
		if r == '\\' || (hyphens && r == '-') {
			dst = append(dst, '\\')
		}
		dst = append(dst, r)
	}
	return dst
}

func containsRune(s []rune, r rune) bool {
	for _, x := range s {
		if x == r {
			return true
		}
	}
	return false
}

// findRune is Python's str.find(sub, start, end) for one character.
func findRune(s []rune, r rune, start, end int) int {
	if end > len(s) {
		end = len(s)
	}
	for k := start; k < end; k++ {
		if s[k] == r {
			return k
		}
	}
	return -1
}

// parseReSet reads a character set the way Python's re parser does
// (re._parser, the '[' branch), given the source between '[' and ']'.
// A backslash and the character after it form one item, always a literal
// here since translate only escapes punctuation.
func parseReSet(src []rune) (*charSet, error) {
	src = append(src, ']')
	pos := 0
	get := func() (rune, bool, bool) { // char, escaped, ok
		if pos >= len(src) {
			return 0, false, false
		}
		if src[pos] == '\\' {
			if pos+1 >= len(src) {
				return 0, false, false
			}
			pos += 2
			return src[pos-1], true, true
		}
		pos++
		return src[pos-1], false, true
	}
	set := &charSet{}
	if src[0] == '^' {
		set.negate = true
		pos = 1
	}
	for {
		this, thisEsc, ok := get()
		if !ok {
			return nil, fmt.Errorf("unterminated character set")
		}
		if this == ']' && !thisEsc && len(set.items) > 0 {
			break
		}
		if pos < len(src) && src[pos] == '-' {
			pos++
			that, thatEsc, ok := get()
			if !ok {
				return nil, fmt.Errorf("unterminated character set")
			}
			if that == ']' && !thatEsc {
				set.items = append(set.items, runeRange{this, this}, runeRange{'-', '-'})
				break
			}
			if that < this {
				return nil, fmt.Errorf("bad character range %c-%c", this, that)
			}
			set.items = append(set.items, runeRange{this, that})
			continue
		}
		set.items = append(set.items, runeRange{this, this})
	}
	if pos != len(src) {
		// A ']' ended the set early; translate never produces that.
		return nil, fmt.Errorf("unexpected ']' in character set")
	}
	return set, nil
}

// Match reports whether the whole of name matches.
func (p *Pattern) Match(name string) bool {
	toks := p.toks
	si, pi := 0, 0
	starP, starS := -1, 0
	for si < len(name) {
		if pi < len(toks) && toks[pi].kind == tokStar {
			starP, starS = pi, si
			pi++
			continue
		}
		r, size := utf8.DecodeRuneInString(name[si:])
		if pi < len(toks) && toks[pi].matches(r) {
			si += size
			pi++
			continue
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' swallow one more character and retry.
		_, size = utf8.DecodeRuneInString(name[starS:])
		starS += size
		si, pi = starS, starP+1
	}
	for pi < len(toks) && toks[pi].kind == tokStar {
		pi++
	}
	return pi == len(toks)
}
