//go:build !lean

package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/metrics"
	"github.com/gdirty/gdirty/worker"
)

// metricsBuilt: this build serves --metrics-bind (handoff.go).
const metricsBuilt = true

// metricsRegistry is where the cluster registers its own metrics.
type metricsRegistry = prometheus.Registerer

// newMetrics builds gdirty's metrics and their endpoint when addr is set
// (nil recorder and registry otherwise); srv and pool are read at scrape
// time (they are created afterwards).
func newMetrics(addr string, apps []string, srv **arbiter.Server, pool **worker.Pool, stash arbiter.StashStats, log logrus.FieldLogger) (arbiter.Recorder, metricsRegistry, func(), error) {
	if addr == "" {
		return nil, nil, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewRecorder(reg, apps,
		func() float64 {
			if s := *srv; s != nil {
				return float64(s.Queued())
			}
			return 0
		},
		func() float64 {
			if p := *pool; p != nil {
				return float64(len(p.Workers()))
			}
			return 0
		})
	if stash != nil {
		metrics.AddStash(reg, stash)
	}
	stop, err := metrics.Serve(addr, reg, log)
	if err != nil {
		return nil, nil, nil, &usageError{msg: err.Error()}
	}
	return m, reg, stop, nil
}
