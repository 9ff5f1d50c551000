// Package stash is gdirty's stash: gunicorn's shared key-value tables
// (gunicorn.dirty.stash), reached through STASH (0x10) messages from HTTP
// workers and from inside dirty apps.
//
// Service speaks the protocol: it reads the {op, table, key, value,
// pattern} payload, runs the operation on a Backend and builds the
// {"result": ...} answer or the error dict, reproducing what gunicorn's
// arbiter (DirtyArbiter.handle_stash_request) answers byte for byte, with
// the deliberate differences listed on Service. Memory is the in-process
// Backend; the interface leaves room for Redis or NATS KV backends.
package stash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/gdirty/gdirty/compat"
)

// gunicorn's operation codes (gunicorn/dirty/protocol.py STASH_OP_*).
const (
	OpPut         = 1
	OpGet         = 2
	OpDelete      = 3
	OpKeys        = 4
	OpClear       = 5
	OpInfo        = 6
	OpEnsure      = 7
	OpDeleteTable = 8
	OpTables      = 9
	OpExists      = 10
)

// Raw TLV encodings of the defaults gunicorn's arbiter uses for absent
// fields: message.get("table", "") and message.get("key") / ("value").
const (
	rawNone     = "\x00"
	rawEmptyStr = "\x11\x00\x00\x00\x00"
)

// Error types. gunicorn's stash client (StashClient._execute) turns these
// two into StashKeyNotFoundError / StashTableNotFoundError, and every other
// error_type into StashError(message).
const (
	TypeKeyNotFound   = "StashKeyNotFoundError"
	TypeTableNotFound = "StashTableNotFoundError"
	// TypeStashError is sent for a refused put (memory bound): the client
	// raises StashError(message) for it, the class its name says.
	TypeStashError = "StashError"
)

// Service answers STASH payloads (it implements arbiter.Service).
//
// Where gdirty deliberately differs from gunicorn 27.0.1's arbiter:
//
//   - Key and table not found are sent with error_type
//     StashKeyNotFoundError / StashTableNotFoundError (gunicorn sets those
//     names on an attribute its to_dict ignores and sends "DirtyError").
//     That is what the client's documented behaviour needs: get(t, k,
//     default) returns the default, info(missing) raises
//     StashTableNotFoundError, and the dict-like table keeps working.
//     The messages ("Key not found: {key}", "Table not found: {table}")
//     are gunicorn's.
//   - A stored value that is a dict with an "error" key comes back from
//     get like any other value (gunicorn mistakes it for its own internal
//     error marker and answers an error).
//   - A put, ensure or new table that would take the stash past the memory
//     bound is refused with a StashError and changes nothing (gunicorn has
//     no bound).
//   - A keys/tables answer too big for one frame is an error, not a frame
//     the client must reject.
//   - A payload that is not a dict is answered with a DirtyProtocolError
//     (gunicorn drops the connection).
type Service struct {
	b Backend
}

// NewService returns a Service storing into b.
func NewService(b Backend) *Service { return &Service{b: b} }

// Backend returns the backend the service stores into.
func (s *Service) Backend() Backend { return s.b }

// EnsureTables creates the named tables (str names, as a DirtyApp's
// `stashes` attribute lists them) so they exist from the start.
func EnsureTables(b Backend, names ...string) error {
	for _, name := range names {
		raw, err := compat.Encode(name)
		if err != nil {
			return fmt.Errorf("stash table %q: %w", name, err)
		}
		if err := b.Ensure(string(raw)); err != nil {
			return fmt.Errorf("stash table %q: %w", name, err)
		}
	}
	return nil
}

// request holds the raw fields of a STASH payload; nil means absent.
type request struct {
	op, table, key, value, pattern []byte
}

// Handle answers one STASH payload with the RESPONSE payload or the error.
func (s *Service) Handle(payload []byte) ([]byte, *compat.DirtyError) {
	var req request
	err := compat.RangeDict(payload, func(k string, v []byte) {
		// A repeated field: the last one wins, as in Python's dict.
		switch k {
		case "op":
			req.op = v
		case "table":
			req.table = v
		case "key":
			req.key = v
		case "value":
			req.value = v
		case "pattern":
			req.pattern = v
		}
	})
	if err != nil {
		if compat.IsKind(err, compat.KindMissingField) {
			return nil, &compat.DirtyError{Type: "DirtyProtocolError", Message: "Stash payload must be a dict: " + err.(*compat.ProtocolError).Message}
		}
		return nil, compat.ErrProtocol(err)
	}
	return s.do(&req)
}

func (s *Service) do(req *request) ([]byte, *compat.DirtyError) {
	op, ok := opCode(req.op)
	if !ok {
		return nil, compat.ErrGeneric("Unknown stash operation: %s", pyStrOf(req.op, rawNone))
	}
	table := orDefault(req.table, rawEmptyStr)
	switch op {
	case OpPut:
		err := s.b.Put(table, orDefault(req.key, rawNone), orDefault(req.value, rawNone))
		return boolResult(true, err, req)
	case OpGet:
		v, err := s.b.Get(table, orDefault(req.key, rawNone))
		if err != nil {
			return nil, toDirtyError(err, req)
		}
		return result(v)
	case OpDelete:
		ok, err := s.b.Delete(table, orDefault(req.key, rawNone))
		return boolResult(ok, err, req)
	case OpKeys:
		keys, err := s.b.Keys(table)
		if err != nil {
			return nil, toDirtyError(err, req)
		}
		if len(keys) > 0 && truthy(req.pattern) {
			if keys, err = filterKeys(keys, req.pattern); err != nil {
				return nil, toDirtyError(err, req)
			}
		}
		return listResult(keys)
	case OpClear:
		return boolResult(true, s.b.Clear(table), req)
	case OpInfo:
		n, err := s.b.Len(table)
		if err != nil {
			return nil, toDirtyError(err, req)
		}
		// {"size": n, "table": table}, table as the request sent it.
		out := appendResultHeader(make([]byte, 0, 64+len(table)))
		out = append(out, compat.TypeDict, 0, 0, 0, 2)
		out = appendStr(out, "size")
		out = appendInt(out, int64(n))
		out = appendStr(out, "table")
		out = append(out, table...)
		return out, nil
	case OpEnsure:
		return boolResult(true, s.b.Ensure(table), req)
	case OpDeleteTable:
		ok, err := s.b.DeleteTable(table)
		return boolResult(ok, err, req)
	case OpTables:
		names, err := s.b.Tables()
		if err != nil {
			return nil, toDirtyError(err, req)
		}
		return listResult(names)
	case OpExists:
		var ok bool
		var err error
		if key := orDefault(req.key, rawNone); key == rawNone {
			ok, err = s.b.HasTable(table)
		} else {
			ok, err = s.b.Has(table, key)
		}
		return boolResult(ok, err, req)
	}
	return nil, compat.ErrGeneric("Unknown stash operation: %d", op) // not reached: opCode checks the range
}

// toDirtyError turns a backend error into the error dict gdirty sends.
func toDirtyError(err error, req *request) *compat.DirtyError {
	var de *compat.DirtyError
	var le *LimitError
	switch {
	case errors.Is(err, ErrKeyNotFound):
		return &compat.DirtyError{Type: TypeKeyNotFound, Message: "Key not found: " + pyStrOf(req.key, rawNone)}
	case errors.Is(err, ErrTableNotFound):
		return &compat.DirtyError{Type: TypeTableNotFound, Message: "Table not found: " + pyStrOf(req.table, rawEmptyStr)}
	case errors.As(err, &le):
		return &compat.DirtyError{Type: TypeStashError, Message: le.Error(), Details: compat.NewDict(
			"max_bytes", le.MaxBytes, "used_bytes", le.UsedBytes, "needed_bytes", le.NeedBytes)}
	case errors.As(err, &de):
		return de
	}
	// Python exceptions (TypeError for an unhashable key, ...) reach the
	// client as DirtyError(str(e)), as in gunicorn.
	return &compat.DirtyError{Type: "DirtyError", Message: err.Error()}
}

func orDefault(raw []byte, def string) string {
	if raw == nil {
		return def
	}
	return string(raw)
}

// pyStrOf formats a raw field as Python's str() would.
func pyStrOf(raw []byte, def string) string {
	if raw == nil {
		raw = []byte(def)
	}
	if raw[0] == compat.TypeString && len(raw) >= 5 {
		return string(raw[5:])
	}
	v, err := compat.Decode(raw)
	if err != nil {
		return "<undecodable>"
	}
	return compat.PyStr(v)
}

// opCode maps the op field to an operation as gunicorn's `op == STASH_OP_*`
// comparisons do: Python equality, so 1.0 and True are op 1 as well.
func opCode(raw []byte) (int, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var v int64
	switch raw[0] {
	case compat.TypeBool:
		if len(raw) != 2 {
			return 0, false
		}
		if raw[1] != 0 {
			v = 1
		}
	case compat.TypeInt64:
		if len(raw) != 9 {
			return 0, false
		}
		v = int64(binary.BigEndian.Uint64(raw[1:]))
	case compat.TypeFloat64:
		if len(raw) != 9 {
			return 0, false
		}
		f := math.Float64frombits(binary.BigEndian.Uint64(raw[1:]))
		if f != math.Trunc(f) || f < OpPut || f > OpExists {
			return 0, false
		}
		v = int64(f)
	default:
		return 0, false
	}
	if v < OpPut || v > OpExists {
		return 0, false
	}
	return int(v), true
}

// truthy is Python's bool() of a raw value (gunicorn: `if pattern:`).
func truthy(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case compat.TypeNone:
		return false
	case compat.TypeBool:
		return len(raw) > 1 && raw[1] != 0
	case compat.TypeInt64:
		return len(raw) == 9 && binary.BigEndian.Uint64(raw[1:]) != 0
	case compat.TypeFloat64:
		// NaN is true; 0.0 and -0.0 are false.
		return len(raw) == 9 && math.Float64frombits(binary.BigEndian.Uint64(raw[1:])) != 0
	case compat.TypeBytes, compat.TypeString, compat.TypeList, compat.TypeDict:
		return len(raw) >= 5 && binary.BigEndian.Uint32(raw[1:]) != 0
	}
	return false
}

// filterKeys keeps the keys k with fnmatch.fnmatch(str(k), pattern).
// A pattern that is not a str fails the way Python's fnmatch does (only
// reached when there is at least one key, as in gunicorn).
func filterKeys(keys []string, pattern []byte) ([]string, error) {
	switch pattern[0] {
	case compat.TypeString:
	case compat.TypeBytes:
		return nil, errors.New("cannot use a bytes pattern on a string-like object")
	default:
		return nil, fmt.Errorf("expected str, bytes or os.PathLike object, not %s", pyTypeName(pattern[0]))
	}
	p, err := CompilePattern(string(pattern[5:]))
	if err != nil {
		return nil, err
	}
	out := keys[:0:0]
	for _, k := range keys {
		if p.Match(keyStr(k)) {
			out = append(out, k)
		}
	}
	return out, nil
}

// keyStr is Python's str() of a stored key.
func keyStr(raw string) string {
	if raw[0] == compat.TypeString {
		return raw[5:]
	}
	v, err := compat.Decode([]byte(raw))
	if err != nil {
		return ""
	}
	return compat.PyStr(v)
}

func pyTypeName(t byte) string {
	switch t {
	case compat.TypeNone:
		return "NoneType"
	case compat.TypeBool:
		return "bool"
	case compat.TypeInt64:
		return "int"
	case compat.TypeFloat64:
		return "float"
	case compat.TypeBytes:
		return "bytes"
	case compat.TypeString:
		return "str"
	case compat.TypeList:
		return "list"
	case compat.TypeDict:
		return "dict"
	}
	return "object"
}

// The answer is {"result": <value>}: dict header, the key, then the value
// bytes appended as they are (stored values are never re-encoded).
var resultHeader = []byte{compat.TypeDict, 0, 0, 0, 1, compat.TypeString, 0, 0, 0, 6, 'r', 'e', 's', 'u', 'l', 't'}

func appendResultHeader(dst []byte) []byte { return append(dst, resultHeader...) }

func appendStr(dst []byte, s string) []byte {
	dst = append(dst, compat.TypeString)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

func appendInt(dst []byte, v int64) []byte {
	dst = append(dst, compat.TypeInt64)
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

func result(raw string) ([]byte, *compat.DirtyError) {
	if err := checkSize(len(resultHeader) + len(raw)); err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(resultHeader)+len(raw))
	return append(appendResultHeader(out), raw...), nil
}

func boolResult(v bool, err error, req *request) ([]byte, *compat.DirtyError) {
	if err != nil {
		return nil, toDirtyError(err, req)
	}
	b := byte(0)
	if v {
		b = 1
	}
	return append(appendResultHeader(make([]byte, 0, len(resultHeader)+2)), compat.TypeBool, b), nil
}

func listResult(items []string) ([]byte, *compat.DirtyError) {
	if len(items) > compat.MaxListSize {
		// gunicorn's encoder refuses the list; the arbiter sends str(e).
		return nil, compat.ErrGeneric("List too large: %d items (max: %d)", len(items), compat.MaxListSize)
	}
	size := len(resultHeader) + 5
	for _, it := range items {
		size += len(it)
	}
	if err := checkSize(size); err != nil {
		return nil, err
	}
	out := appendResultHeader(make([]byte, 0, size))
	out = append(out, compat.TypeList)
	out = binary.BigEndian.AppendUint32(out, uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out, nil
}

func checkSize(n int) *compat.DirtyError {
	if n > compat.MaxMessageSize {
		return compat.ErrGeneric("Stash result too large: %d bytes (max: %d)", n, compat.MaxMessageSize)
	}
	return nil
}
