package main

import (
	"os"
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
		cmd := arbiter.ParentCommand()
		if !strings.Contains(cmd, "gunicorn") || strings.Contains(cmd, "gdirty") {
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

// procName is gunicorn's proc_name (default "gunicorn"), which names the
// dirty arbiter PID file.
func procName(s *compat.Settings) string {
	if s.ProcName != nil && *s.ProcName != "" {
		return *s.ProcName
	}
	return "gunicorn"
}
