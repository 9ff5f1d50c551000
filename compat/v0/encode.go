package v0

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/gdirty/gdirty/compat"
)

// Encode returns json.dumps(v) with Python's defaults for a value of the
// compat model (nil, bool, int, int64, BigInt, float64, string, []any,
// *compat.Dict). []byte is refused with Python's TypeError text, as JSON
// cannot carry it.
func Encode(v any) ([]byte, error) { return appendValue(nil, v, 0) }

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > compat.MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", compat.MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case BigInt:
		return append(b, x...), nil
	case float64:
		return appendFloat(b, x), nil
	case string:
		return AppendString(b, x), nil
	case []any:
		b = append(b, '[')
		for i, item := range x {
			if i > 0 {
				b = append(b, ", "...)
			}
			var err error
			if b, err = appendValue(b, item, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case *compat.Dict:
		b = append(b, '{')
		for i := 0; i < x.Len(); i++ {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = AppendString(b, x.Keys[i])
			b = append(b, ": "...)
			var err error
			if b, err = appendValue(b, x.Values[i], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []byte:
		return nil, pyError("Object of type bytes is not JSON serializable")
	}
	return nil, pyError(fmt.Sprintf("Object of type %T is not JSON serializable", v))
}

// appendFloat is json's floatstr: NaN, Infinity, -Infinity, else repr().
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	return append(b, compat.PyFloatRepr(f)...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as json.dumps writes a str with ensure_ascii:
// '"' and '\\' and \b \f \n \r \t by name, every other character outside
// ' '..'~' as \uXXXX (lower-case hex, surrogate pairs above U+FFFF). A
// lone surrogate stored in WTF-8 form comes out as its own \udXXX;
// any other byte that is not UTF-8 cannot come from the decoder and is
// written as U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		if c < 0x80 {
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = appendU(b, rune(c))
			}
			i++
			continue
		}
		if u, ok := wtf8Surrogate(s[i:]); ok {
			b = appendU(b, u)
			i += 3
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r >= 0x10000 {
			r -= 0x10000
			b = appendU(b, 0xd800+(r>>10))
			b = appendU(b, 0xdc00+(r&0x3ff))
			continue
		}
		b = appendU(b, r)
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// wtf8Surrogate reports a surrogate code point in 3-byte WTF-8 form
// (ED A0..BF 80..BF) at the start of s.
func wtf8Surrogate(s string) (rune, bool) {
	if len(s) < 3 || s[0] != 0xed || s[1] < 0xa0 || s[1] > 0xbf || s[2] < 0x80 || s[2] > 0xbf {
		return 0, false
	}
	return 0xd000 | rune(s[1]&0x3f)<<6 | rune(s[2]&0x3f), true
}
