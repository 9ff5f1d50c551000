package compat

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// TLV type codes.
const (
	TypeNone    = 0x00
	TypeBool    = 0x01
	TypeInt64   = 0x05
	TypeFloat64 = 0x06
	TypeBytes   = 0x10
	TypeString  = 0x11
	TypeList    = 0x20
	TypeDict    = 0x21
)

// gunicorn's limits, plus a nesting bound gunicorn lacks (it relies on
// Python's recursion limit); 64 levels is far beyond any real payload.
const (
	MaxStringSize = 64 * 1024 * 1024
	MaxBytesSize  = 64 * 1024 * 1024
	MaxListSize   = 1024 * 1024
	MaxDictSize   = 1024 * 1024
	MaxDepth      = 64
)

// Encode returns the TLV encoding of v.
func Encode(v any) ([]byte, error) { return AppendValue(nil, v) }

// AppendValue appends the TLV encoding of v to dst.
func AppendValue(dst []byte, v any) ([]byte, error) { return appendValue(dst, v, 0) }

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	switch v.(type) {
	case []any, *Dict, map[string]any:
		// Same bound as the decoder (decoder.count): a list or dict may sit
		// at depth 0..MaxDepth-1, so Encode never produces bytes Decode
		// refuses. (Checking depth > MaxDepth for every value let a 65th
		// nested container through.)
		if depth >= MaxDepth {
			return dst, protoErr(KindTooDeep, nil, "Nesting too deep: more than %d levels", MaxDepth)
		}
	}
	switch x := v.(type) {
	case nil:
		return append(dst, TypeNone), nil
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		return append(dst, TypeBool, b), nil
	case int:
		return appendInt(dst, int64(x)), nil
	case int64:
		return appendInt(dst, x), nil
	case float64:
		dst = append(dst, TypeFloat64)
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(x)), nil
	case []byte:
		if len(x) > MaxBytesSize {
			return dst, protoErr(KindTooLarge, nil, "Bytes too large: %d bytes (max: %d)", len(x), MaxBytesSize)
		}
		dst = append(dst, TypeBytes)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(x)))
		return append(dst, x...), nil
	case string:
		return appendString(dst, x)
	case []any:
		if len(x) > MaxListSize {
			return dst, protoErr(KindTooLarge, nil, "List too large: %d items (max: %d)", len(x), MaxListSize)
		}
		dst = append(dst, TypeList)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(x)))
		var err error
		for _, item := range x {
			if dst, err = appendValue(dst, item, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case *Dict:
		if x.Len() > MaxDictSize {
			return dst, protoErr(KindTooLarge, nil, "Dict too large: %d items (max: %d)", x.Len(), MaxDictSize)
		}
		dst = append(dst, TypeDict)
		dst = binary.BigEndian.AppendUint32(dst, uint32(x.Len()))
		var err error
		for i := 0; i < x.Len(); i++ {
			if dst, err = appendString(dst, x.Keys[i]); err != nil {
				return dst, err
			}
			if dst, err = appendValue(dst, x.Values[i], depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case map[string]any:
		d := &Dict{}
		for k, val := range x {
			d.Keys = append(d.Keys, k)
			d.Values = append(d.Values, val)
		}
		return appendValue(dst, d, depth)
	default:
		return dst, protoErr(KindUnsupportedType, nil, "Unsupported type for TLV encoding: %T", v)
	}
}

func appendInt(dst []byte, x int64) []byte {
	dst = append(dst, TypeInt64)
	return binary.BigEndian.AppendUint64(dst, uint64(x))
}

func appendString(dst []byte, s string) ([]byte, error) {
	if len(s) > MaxStringSize {
		return dst, protoErr(KindTooLarge, nil, "String too large: %d bytes (max: %d)", len(s), MaxStringSize)
	}
	if !utf8.ValidString(s) {
		return dst, protoErr(KindInvalidUTF8, nil, "Invalid UTF-8 in string")
	}
	dst = append(dst, TypeString)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...), nil
}

// Decode decodes one complete TLV value; trailing bytes are an error, as
// in gunicorn's decode_full. The returned []byte values alias data.
func Decode(data []byte) (any, error) {
	d := decoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(data) {
		return nil, protoErr(KindTrailingData, window(data, d.off), "Trailing data after TLV: %d bytes", len(data)-d.off)
	}
	return v, nil
}

// decoder walks a TLV buffer. With skip set it validates without building
// values, which is what the forwarding path uses: no allocation at all.
type decoder struct {
	data []byte
	off  int
	skip bool
}

func (d *decoder) raw(back int) []byte {
	// gunicorn's data[offset-back:offset+20].
	start := max(d.off-back, 0)
	end := min(d.off+20, len(d.data))
	return d.data[start:end]
}

func (d *decoder) need(n int) bool { return len(d.data)-d.off >= n }

func (d *decoder) u32() uint32 {
	v := binary.BigEndian.Uint32(d.data[d.off:])
	d.off += 4
	return v
}

func (d *decoder) value(depth int) (any, error) {
	if !d.need(1) {
		return nil, protoErr(KindTruncated, d.raw(0), "Truncated TLV data: no type byte")
	}
	t := d.data[d.off]
	d.off++
	switch t {
	case TypeNone:
		return nil, nil
	case TypeBool:
		if !d.need(1) {
			return nil, protoErr(KindTruncated, d.raw(1), "Truncated TLV data: missing bool value")
		}
		b := d.data[d.off] != 0
		d.off++
		return b, nil
	case TypeInt64:
		if !d.need(8) {
			return nil, protoErr(KindTruncated, d.raw(1), "Truncated TLV data: incomplete int64")
		}
		v := int64(binary.BigEndian.Uint64(d.data[d.off:]))
		d.off += 8
		if d.skip {
			return nil, nil // boxing v into an any would allocate
		}
		return v, nil
	case TypeFloat64:
		if !d.need(8) {
			return nil, protoErr(KindTruncated, d.raw(1), "Truncated TLV data: incomplete float64")
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(d.data[d.off:]))
		d.off += 8
		if d.skip {
			return nil, nil
		}
		return v, nil
	case TypeBytes:
		b, err := d.sized("bytes", MaxBytesSize)
		if err != nil || d.skip {
			return nil, err
		}
		return b, nil
	case TypeString:
		b, err := d.sized("string", MaxStringSize)
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(b) {
			// gunicorn appends str() of Python's UnicodeDecodeError.
			return nil, protoErr(KindInvalidUTF8, b[:min(len(b), 20)], "Invalid UTF-8 in string: %s", pyUTF8Error(b))
		}
		if d.skip {
			return nil, nil
		}
		return string(b), nil
	case TypeList:
		return d.list(depth)
	case TypeDict:
		return d.dict(depth)
	default:
		return nil, protoErr(KindUnknownTLVType, d.raw(1), "Unknown TLV type code: 0x%02x", t)
	}
}

// sized reads a 4-byte length and that many bytes, checking the limit
// before looking at the data and never allocating.
func (d *decoder) sized(what string, limit uint32) ([]byte, error) {
	if !d.need(4) {
		return nil, protoErr(KindTruncated, d.raw(1), "Truncated TLV data: incomplete %s length", what)
	}
	n := d.u32()
	if n > limit {
		noun := "Bytes"
		if what == "string" {
			noun = "String"
		}
		return nil, protoErr(KindTooLarge, nil, "%s too large: %d bytes (max: %d)", noun, n, limit)
	}
	if !d.need(int(n)) {
		if what == "string" {
			return nil, protoErr(KindTruncated, d.raw(5), "Truncated TLV data: expected %d bytes for string, got %d", n, len(d.data)-d.off)
		}
		return nil, protoErr(KindTruncated, d.raw(5), "Truncated TLV data: expected %d bytes, got %d", n, len(d.data)-d.off)
	}
	b := d.data[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b, nil
}

// count reads a list/dict item count. Capacity hints are clamped to the
// bytes left (every item takes at least one byte), so a huge count with no
// items cannot make us allocate.
func (d *decoder) count(what string, limit uint32, depth int) (int, int, error) {
	if depth >= MaxDepth {
		return 0, 0, protoErr(KindTooDeep, d.raw(1), "Nesting too deep: more than %d levels", MaxDepth)
	}
	if !d.need(4) {
		return 0, 0, protoErr(KindTruncated, d.raw(1), "Truncated TLV data: incomplete %s count", what)
	}
	n := d.u32()
	if n > limit {
		noun := "List"
		if what == "dict" {
			noun = "Dict"
		}
		return 0, 0, protoErr(KindTooLarge, nil, "%s too large: %d items (max: %d)", noun, n, limit)
	}
	hint := int(n)
	if left := len(d.data) - d.off; hint > left {
		hint = left
	}
	return int(n), hint, nil
}

func (d *decoder) list(depth int) (any, error) {
	n, hint, err := d.count("list", MaxListSize, depth)
	if err != nil {
		return nil, err
	}
	var items []any
	if !d.skip {
		items = make([]any, 0, hint)
	}
	for i := 0; i < n; i++ {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if !d.skip {
			items = append(items, v)
		}
	}
	if d.skip {
		return nil, nil
	}
	return items, nil
}

func (d *decoder) dict(depth int) (any, error) {
	n, hint, err := d.count("dict", MaxDictSize, depth)
	if err != nil {
		return nil, err
	}
	var out *Dict
	if !d.skip {
		hint /= 2
		out = &Dict{Keys: make([]string, 0, hint), Values: make([]any, 0, hint)}
	}
	for i := 0; i < n; i++ {
		if !d.need(1) {
			return nil, protoErr(KindTruncated, d.raw(0), "Truncated TLV data: no type byte")
		}
		if kt := d.data[d.off]; kt != TypeString {
			// Decode the key first so a malformed key reports its own
			// error, then refuse it for not being a string, as gunicorn.
			if _, err := (&decoder{data: d.data, off: d.off, skip: true}).value(depth + 1); err != nil {
				return nil, err
			}
			return nil, protoErr(KindNonStringKey, nil, "Dict key must be string, got %s", pyTypeName(kt))
		}
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if !d.skip {
			out.Set(k.(string), v)
		}
	}
	if d.skip {
		return nil, nil
	}
	return out, nil
}

func pyTypeName(t byte) string {
	switch t {
	case TypeNone:
		return "NoneType"
	case TypeBool:
		return "bool"
	case TypeInt64:
		return "int"
	case TypeFloat64:
		return "float"
	case TypeBytes:
		return "bytes"
	case TypeString:
		return "str"
	case TypeList:
		return "list"
	case TypeDict:
		return "dict"
	}
	return "unknown"
}
