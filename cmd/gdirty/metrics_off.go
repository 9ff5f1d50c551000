//go:build lean

package main

// The lean gdirty links no Prometheus client and no HTTP server (about
// 2 MiB of idle RSS): given --metrics-bind it replaces itself with
// gdirty-cluster (handoff.go), so newMetrics below never sees an address.

import (
	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/worker"
)

// metricsBuilt: this build has no metrics endpoint (handoff.go).
const metricsBuilt = false

type metricsRegistry = struct{}

func newMetrics(string, []string, **arbiter.Server, **worker.Pool, arbiter.StashStats, logrus.FieldLogger) (arbiter.Recorder, metricsRegistry, func(), error) {
	return nil, metricsRegistry{}, func() {}, nil
}
