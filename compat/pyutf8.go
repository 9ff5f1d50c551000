package compat

// PyUTF8Error returns str() of the UnicodeDecodeError CPython raises for
// bytes(b).decode("utf-8"); b must be invalid UTF-8. (Protocol v0 decodes
// whole messages with it.)
func PyUTF8Error(b []byte) string { return pyUTF8Error(b) }
