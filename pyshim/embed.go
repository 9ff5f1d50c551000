// Package pyshim embeds the Python half of gdirty (the gdirty_pyshim
// package) so the gdirty binary always runs the shim it was built with:
// the worker link is private, and both ends must agree on it.
package pyshim

import "embed"

// Files holds gdirty_pyshim/*.py.
//
//go:embed gdirty_pyshim/*.py
var Files embed.FS

// PackageDir is the directory inside Files that holds the package.
const PackageDir = "gdirty_pyshim"
