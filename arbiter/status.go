package arbiter

import (
	"math"
	"os"
	"time"

	"github.com/gdirty/gdirty/compat"
)

// status builds the STATUS result with gunicorn's shape: arbiter_pid,
// workers (pid, age, apps, booted, last_heartbeat = seconds since the last
// heartbeat, rounded to 2 places), worker_count, apps. gdirty's own keys
// follow a worker's, only when the feature is in use, so a plain config
// gets gunicorn's exact shape: devices (placement on), requests (calls
// served, recycling on), retiring (why the worker is being replaced).
func (s *Server) status() *compat.Dict {
	workers := []any{}
	if s.pool != nil {
		now := time.Now()
		counts := s.pool.CountsRequests()
		for _, w := range s.pool.Workers() {
			since := now.Sub(w.LastHeartbeat()).Seconds()
			kv := []any{
				"pid", int64(w.PID),
				"age", int64(w.Age),
				"apps", strList(w.Apps),
				"booted", w.Booted(),
				"last_heartbeat", math.Round(since*100) / 100,
			}
			if w.Devices != nil {
				kv = append(kv, "devices", strList(w.Devices))
			}
			if counts {
				kv = append(kv, "requests", w.Requests())
			}
			if r := w.RetireReason(); r != "" {
				kv = append(kv, "retiring", r)
			}
			workers = append(workers, compat.NewDict(kv...))
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

func strList(items []string) []any {
	out := make([]any, len(items))
	for i, a := range items {
		out[i] = a
	}
	return out
}
