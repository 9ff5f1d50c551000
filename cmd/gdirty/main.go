// Command gdirty is a drop-in replacement for gunicorn's dirty arbiter.
//
//	gdirty --config gunicorn.conf.py
//
// reads the same dirty_* settings and hooks as gunicorn, runs the user's
// DirtyApp classes in Python worker processes and serves gunicorn's HTTP
// workers on a Unix socket (export it to them as GUNICORN_DIRTY_SOCKET).
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := newApp().Run(os.Args); err != nil {
		var child *childExitError
		if !errors.As(err, &child) {
			fmt.Fprintf(os.Stderr, "gdirty: %v\n", err)
		}
		os.Exit(exitCode(err))
	}
}
