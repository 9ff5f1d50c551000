package compat

// RangeDict validates payload as exactly one TLV dict (every length, type,
// UTF-8 string, key type and the nesting bound, like Validate) and calls fn
// for each entry with its key and the raw TLV encoding of its value, which
// aliases payload. A key that occurs twice is reported twice, in order (so
// "last one wins", as in Python, is the caller's natural reading). A
// well-formed payload that is not a dict yields a KindMissingField error
// naming its Python type. Nothing is allocated beyond the key strings.
// fn runs while the walk goes on: when an error is returned, fn may already
// have seen the entries before the malformed one.
func RangeDict(payload []byte, fn func(key string, value []byte)) error {
	d := decoder{data: payload, skip: true}
	if len(payload) == 0 {
		return protoErr(KindTruncated, nil, "Truncated TLV data: no type byte")
	}
	if payload[0] != TypeDict {
		if err := Validate(payload); err != nil {
			return err
		}
		return protoErr(KindMissingField, nil, "Payload must be a dict, got %s", pyTypeName(payload[0]))
	}
	d.off = 1
	n, _, err := d.count("dict", MaxDictSize, 0)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if !d.need(1) {
			return protoErr(KindTruncated, nil, "Truncated TLV data: no type byte")
		}
		if kt := d.data[d.off]; kt != TypeString {
			if _, err := d.value(1); err != nil {
				return err
			}
			return protoErr(KindNonStringKey, nil, "Dict key must be string, got %s", pyTypeName(kt))
		}
		keyStart := d.off + 5
		if _, err := d.value(1); err != nil {
			return err
		}
		key := payload[keyStart:d.off]
		valStart := d.off
		if _, err := d.value(1); err != nil {
			return err
		}
		fn(string(key), payload[valStart:d.off:d.off])
	}
	if d.off != len(payload) {
		return protoErr(KindTrailingData, payload[d.off:], "Trailing data after TLV: %d bytes", len(payload)-d.off)
	}
	return nil
}
