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
	"runtime"
)

func main() {
	// gdirty never writes heap profiles; sampling allocations for them
	// costs a 1.4 MiB bucket table on the first sample (resident in part).
	runtime.MemProfileRate = 0
	// gdirty's work is forwarding bytes between sockets; with one P every
	// hand-off between goroutines stays on one thread instead of waking
	// another (measured: less CPU per call and lower tail latency at every
	// concurrency in bench/). GOMAXPROCS in the environment still wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if err := newApp().Run(os.Args); err != nil {
		var child *childExitError
		if !errors.As(err, &child) {
			fmt.Fprintf(os.Stderr, "gdirty: %v\n", err)
		}
		os.Exit(exitCode(err))
	}
}
