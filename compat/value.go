package compat

// The Go model of a TLV value. Decode produces, and Encode accepts:
//
//	nil, bool, int64, float64, []byte, string, []any (list), *Dict (dict)
//
// Encode also accepts int and map[string]any for convenience. Dict keeps
// insertion order because Python dicts do and clients observe it.

// Dict is an insertion-ordered mapping with string keys, the TLV dict.
type Dict struct {
	Keys   []string
	Values []any
	// index maps key -> position once the dict is large enough that a
	// linear search per Set would make decoding quadratic (a hostile
	// payload can carry 2^20 keys).
	index map[string]int
}

const dictIndexThreshold = 16

// NewDict builds a Dict from alternating key, value arguments.
func NewDict(kv ...any) *Dict {
	d := &Dict{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Set(kv[i].(string), kv[i+1])
	}
	return d
}

// Len returns the number of entries.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.Keys)
}

// Get returns the value stored under key.
func (d *Dict) Get(key string) (any, bool) {
	if d == nil {
		return nil, false
	}
	if d.index != nil {
		i, ok := d.index[key]
		if !ok {
			return nil, false
		}
		return d.Values[i], true
	}
	for i, k := range d.Keys {
		if k == key {
			return d.Values[i], true
		}
	}
	return nil, false
}

// Set replaces the value of an existing key in place (keeping its
// position, as Python does) or appends a new entry.
func (d *Dict) Set(key string, v any) {
	if d.index == nil && len(d.Keys) >= dictIndexThreshold {
		d.index = make(map[string]int, len(d.Keys)*2)
		for i, k := range d.Keys {
			d.index[k] = i
		}
	}
	if d.index != nil {
		if i, ok := d.index[key]; ok {
			d.Values[i] = v
			return
		}
		d.index[key] = len(d.Keys)
	} else {
		for i, k := range d.Keys {
			if k == key {
				d.Values[i] = v
				return
			}
		}
	}
	d.Keys = append(d.Keys, key)
	d.Values = append(d.Values, v)
}
