package compat

// RequestRoute is what the arbiter needs from a REQUEST payload to route it.
type RequestRoute struct {
	// AppPath is app_path when it is a str.
	AppPath string
	// AppValue is app_path decoded when it is not a str: gunicorn's arbiter
	// routes whatever value the client sent.
	AppValue    any
	AppIsString bool
	Action      string
}

// AnyWorker reports whether gunicorn's arbiter would send the call to any
// worker: it does so when app_path is falsy ("" or 0, say), and the worker
// then answers that the app is not found.
func (r RequestRoute) AnyWorker() bool {
	if r.AppIsString {
		return r.AppPath == ""
	}
	return !PyTruthy(r.AppValue)
}

// PyTruthy is Python's bool(v) for a TLV value.
func PyTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case int:
		return x != 0
	case float64:
		return x != 0 // NaN != 0: truthy, as in Python
	case []byte:
		return len(x) > 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case *Dict:
		return x.Len() > 0
	}
	return true
}

// ScanRequest validates a REQUEST payload completely (every length, type,
// UTF-8 string, key type and the nesting bound) without building values, and
// returns the routing fields. The payload itself is forwarded untouched, so
// this is the only work the hot path does on it.
func ScanRequest(payload []byte) (RequestRoute, error) {
	var rr RequestRoute
	d := decoder{data: payload, skip: true}
	if len(payload) == 0 {
		return rr, protoErr(KindMissingField, nil, "Request payload is empty")
	}
	if payload[0] != TypeDict {
		if _, err := d.value(0); err != nil {
			return rr, err
		}
		if d.off != len(payload) {
			// gunicorn decodes the whole payload first: trailing bytes are
			// its error before the shape is.
			return rr, protoErr(KindTrailingData, window(payload, d.off), "Trailing data after TLV: %d bytes", len(payload)-d.off)
		}
		return rr, protoErr(KindMissingField, window(payload, 0), "Request payload must be a dict, got %s", pyTypeName(payload[0]))
	}
	d.off = 1
	n, _, err := d.count("dict", MaxDictSize, 0)
	if err != nil {
		return rr, err
	}
	// Duplicate keys: the last occurrence wins, as in the dict gunicorn's
	// worker decodes from the forwarded payload, so routing uses the same
	// app_path the worker will see. Its type is therefore only checked
	// once the whole payload has been validated (which also gives
	// malformed data precedence, as gunicorn decodes everything first).
	haveApp := false
	var appType byte
	var appRaw []byte
	for i := 0; i < n; i++ {
		if !d.need(1) {
			return rr, protoErr(KindTruncated, d.raw(0), "Truncated TLV data: no type byte")
		}
		if kt := d.data[d.off]; kt != TypeString {
			if _, err := d.value(1); err != nil {
				return rr, err
			}
			return rr, protoErr(KindNonStringKey, nil, "Dict key must be string, got %s", pyTypeName(kt))
		}
		keyStart := d.off + 5
		if _, err := d.value(1); err != nil {
			return rr, err
		}
		key := payload[keyStart:d.off]
		valStart := d.off
		if _, err := d.value(1); err != nil {
			return rr, err
		}
		switch string(key) {
		case "app_path":
			rr.AppPath, _ = stringAt(payload[valStart:d.off])
			haveApp, appType, appRaw = true, payload[valStart], payload[valStart:d.off]
		case "action":
			rr.Action, _ = stringAt(payload[valStart:d.off])
		}
	}
	if d.off != len(payload) {
		return rr, protoErr(KindTrailingData, window(payload, d.off), "Trailing data after TLV: %d bytes", len(payload)-d.off)
	}
	if !haveApp || appType == TypeNone {
		return rr, protoErr(KindMissingField, nil, "Request is missing app_path")
	}
	rr.AppIsString = appType == TypeString
	if !rr.AppIsString {
		// Rare (gunicorn's client always sends a str): decode the value so
		// the answer can name it as gunicorn's arbiter would.
		v, err := Decode(appRaw)
		if err != nil {
			return RequestRoute{}, err
		}
		rr.AppValue = v
	}
	return rr, nil
}

// stringAt returns the string held by an already validated TLV string value.
func stringAt(v []byte) (string, bool) {
	if len(v) < 5 || v[0] != TypeString {
		return "", false
	}
	return string(v[5:]), true
}

// Validate checks that payload is exactly one well-formed TLV value.
func Validate(payload []byte) error {
	d := decoder{data: payload, skip: true}
	if _, err := d.value(0); err != nil {
		return err
	}
	if d.off != len(payload) {
		return protoErr(KindTrailingData, window(payload, d.off), "Trailing data after TLV: %d bytes", len(payload)-d.off)
	}
	return nil
}
