package compat

import "unicode"

// isPrintable approximates Python's str.isprintable() for repr(): letters,
// marks, numbers, punctuation, symbols and the ASCII space are printable;
// other separators, controls, format and unassigned code points are not.
func isPrintable(r rune) bool {
	if r == ' ' {
		return true
	}
	if unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) {
		return false
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}
