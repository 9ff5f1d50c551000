// Package v0 is gunicorn 25.0.0–25.0.3's dirty protocol ("v0"): a 4-byte
// big-endian length, then a JSON object encoded by json.dumps with its
// defaults (", " and ": " separators, ensure_ascii, NaN/Infinity allowed).
//
// gdirty forwards v0 requests to its workers untouched and relays the
// workers' answers untouched (the worker encodes them as gunicorn 25.0.3's
// worker would), so this package only needs to validate a request and read
// the few keys routing needs (ScanRequest), and to encode the error
// messages the arbiter synthesises itself (ErrorMessage).
package v0
