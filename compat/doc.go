// Package compat implements gunicorn's dirty protocol v1 (frame header and
// TLV payload) and the gunicorn semantics gdirty must reproduce (app specs,
// error dictionaries). It knows nothing about sockets or processes: every
// function works on byte slices or io.Reader/io.Writer.
package compat
