package main

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/compat"
)

// watchParent returns a channel closed when the process that owns gdirty
// exits: --parent-pid, or the parent itself when gdirty was started by a
// gunicorn master (as gunicorn's arbiter watches its master). nil when
// gdirty runs on its own.
func watchParent(c *cli.Context, log logrus.FieldLogger) <-chan struct{} {
	ppid := os.Getppid()
	owner := c.Int("parent-pid")
	if owner == 0 {
		if !isGunicornMaster(arbiter.ParentArgs()) {
			return nil
		}
		owner = ppid
		log.Infof("Started by gunicorn (pid %d): the pool stops when it exits", owner)
	}
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for range t.C {
			if !arbiter.ParentAlive(owner, ppid) {
				close(gone)
				return
			}
		}
	}()
	return gone
}

// isGunicornMaster reports whether argv is a gunicorn master's: the
// `gunicorn` script (run directly or by an interpreter), `python -m
// gunicorn`, or a title set by setproctitle ("gunicorn: master [app]").
// Only the program and script names count: "gunicorn" elsewhere in the
// command line (a venv path such as .venv-gunicorn-27.0.1/bin/python, an
// argument) does not make the parent a gunicorn master, and a parent that
// is gdirty itself (`gdirty -- gunicorn ...`) never is.
func isGunicornMaster(argv []string) bool {
	if len(argv) == 0 || strings.Contains(filepath.Base(argv[0]), "gdirty") {
		return false
	}
	if strings.HasPrefix(argv[0], "gunicorn:") || filepath.Base(argv[0]) == "gunicorn" {
		return true
	}
	if !strings.HasPrefix(filepath.Base(argv[0]), "python") {
		return false
	}
	// An interpreter: skip its options up to the script or -m module.
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-m":
			return i+1 < len(argv) && argv[i+1] == "gunicorn"
		case a == "-mgunicorn":
			return true
		case a == "-c" || a == "-":
			return false
		case a == "-W" || a == "-X" || a == "--check-hash-based-pycs":
			i++ // option with a separate value
		case strings.HasPrefix(a, "-"):
		default:
			return filepath.Base(a) == "gunicorn"
		}
	}
	return false
}

// procName is gunicorn's proc_name (default "gunicorn"), which names the
// dirty arbiter PID file.
func procName(s *compat.Settings) string {
	if s.ProcName != nil && *s.ProcName != "" {
		return *s.ProcName
	}
	return "gunicorn"
}
