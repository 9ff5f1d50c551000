package stash

import (
	"encoding/binary"
	"math"
	"strconv"
	"sync/atomic"

	"github.com/gdirty/gdirty/compat"
)

// Keys and table names are Python dict keys in gunicorn's arbiter, so their
// identity follows Python: two values name the same entry when they are
// equal and hash equal. For the values TLV can carry that means:
//
//   - None is one key.
//   - bool, int and float compare as numbers: True == 1 == 1.0 and
//     False == 0 == 0.0 == -0.0 are one key (the first object stored stays
//     the key, as Python keeps the first key object).
//   - NaN is never equal to anything, itself included. CPython's dict would
//     still find a NaN by identity, but every NaN decoded from a message is
//     a fresh object, so each NaN put adds an entry no later lookup finds.
//   - str and bytes compare by content and never equal each other.
//   - list and dict are unhashable: TypeError "unhashable type: 'list'".

// UnhashableError is Python's TypeError for a list or dict used as a key or
// table name.
type UnhashableError struct {
	TypeName string // "list" or "dict"
}

func (e *UnhashableError) Error() string {
	return "unhashable type: '" + e.TypeName + "'"
}

// nanSeq makes every NaN key distinct.
var nanSeq atomic.Uint64

// Identity returns the canonical identity of raw, one complete TLV value:
// two raw values have the same identity exactly when Python's dict would
// treat them as the same key. For str and bytes the identity is raw itself
// (type byte, length and content already identify the value), so a store
// can keep one string for both. Backends other than the in-memory one can
// use Identity to map keys onto their own key space.
func Identity(raw string) (string, error) {
	if raw == "" {
		return "", errMalformed
	}
	switch raw[0] {
	case compat.TypeNone:
		if len(raw) != 1 {
			return "", errMalformed
		}
		return raw, nil
	case compat.TypeBool:
		if len(raw) != 2 {
			return "", errMalformed
		}
		if raw[1] != 0 {
			return intIdentity(1), nil
		}
		return intIdentity(0), nil
	case compat.TypeInt64:
		if len(raw) != 9 {
			return "", errMalformed
		}
		return raw, nil
	case compat.TypeFloat64:
		if len(raw) != 9 {
			return "", errMalformed
		}
		f := math.Float64frombits(binary.BigEndian.Uint64([]byte(raw[1:])))
		switch {
		case math.IsNaN(f):
			return "\xffnan" + strconv.FormatUint(nanSeq.Add(1), 10), nil
		case f == math.Trunc(f) && f >= -(1<<63) && f < (1<<63):
			// Integral and representable: equal to that int64 (and to
			// True/False for 1 and 0; -0.0 lands on 0 here too).
			return intIdentity(int64(f)), nil
		}
		return raw, nil
	case compat.TypeBytes, compat.TypeString:
		return raw, nil
	case compat.TypeList:
		return "", &UnhashableError{TypeName: "list"}
	case compat.TypeDict:
		return "", &UnhashableError{TypeName: "dict"}
	}
	return "", errMalformed
}

func intIdentity(v int64) string {
	var b [9]byte
	b[0] = compat.TypeInt64
	binary.BigEndian.PutUint64(b[1:], uint64(v))
	return string(b[:])
}
