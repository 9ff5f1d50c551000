package arbiter

import (
	"math"
	"os"
	"time"

	"github.com/gdirty/gdirty/compat"
)

// status builds the STATUS result with gunicorn's shape: arbiter_pid,
// workers (pid, age, apps, booted, last_heartbeat = seconds since the last
// heartbeat, rounded to 2 places), worker_count, apps.
func (s *Server) status() *compat.Dict {
	workers := []any{}
	if s.pool != nil {
		now := time.Now()
		for _, w := range s.pool.Workers() {
			apps := make([]any, len(w.Apps))
			for i, a := range w.Apps {
				apps[i] = a
			}
			since := now.Sub(w.LastHeartbeat()).Seconds()
			workers = append(workers, compat.NewDict(
				"pid", int64(w.PID),
				"age", int64(w.Age),
				"apps", apps,
				"booted", w.Booted(),
				"last_heartbeat", math.Round(since*100)/100,
			))
		}
	}
	apps := make([]any, len(s.cfg.Apps))
	for i, a := range s.cfg.Apps {
		apps[i] = a
	}
	return compat.NewDict(
		"arbiter_pid", int64(os.Getpid()),
		"workers", workers,
		"worker_count", int64(len(workers)),
		"apps", apps,
	)
}
