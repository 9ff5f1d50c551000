//go:build lean

package main

// Built with `-tags lean`: the lean gdirty, with none of the cluster
// code linked (the NATS client costs every gdirty about 1 MiB of idle RSS
// even when no cluster is configured). It still knows the cluster flags
// and settings (cluster_flags.go): given any, it replaces itself with
// gdirty-cluster (handoff.go), so nothing below is reached with one set.

import (
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/arbiter/stash"
	"github.com/gdirty/gdirty/worker"
)

// clusterBuilt: this build has no cluster support (handoff.go).
const clusterBuilt = false

type clusterConfig struct{}

func (*clusterConfig) Enabled() bool { return false }

func clusterOptions(*cli.Context, clusterSettings) (*clusterConfig, string, error) {
	return &clusterConfig{}, "local", nil
}

type clusterNode struct{}

func connectCluster(*clusterConfig, logrus.FieldLogger) (*clusterNode, error) {
	return nil, nil
}

func (*clusterNode) join(*arbiter.Server, **worker.Pool, time.Duration, metricsRegistry) error {
	return nil
}

func (*clusterNode) close() {}

type stashBackend interface {
	stash.Backend
	arbiter.StashStats
}

func newStash(_ string, _ *clusterNode, maxBytes int64) (stashBackend, error) {
	return stash.NewMemory(maxBytes), nil
}

// clusterStatus hands `gdirty status --cluster` to gdirty-cluster.
func clusterStatus(*cli.Context) error {
	return execCluster("--cluster", nil)
}
