//go:build nocluster

package main

// Built with `-tags nocluster`: no cluster support, and none of its code
// linked (the NATS client costs every gdirty about 1 MiB of idle RSS even
// when no cluster is configured). The cluster flags and TOML keys are then
// unknown.

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/arbiter/stash"
	"github.com/gdirty/gdirty/worker"
)

type clusterSettings struct{}

type clusterConfig struct{}

func (*clusterConfig) Enabled() bool { return false }

func clusterConnFlags() []cli.Flag { return nil }

func clusterFlags() []cli.Flag { return nil }

func clusterOptions(*cli.Context, clusterSettings) (*clusterConfig, string, error) {
	return &clusterConfig{}, "local", nil
}

func natsServerPath(*cli.Context, clusterSettings) string { return "" }

type clusterNode struct{}

func connectCluster(*clusterConfig, string, logrus.FieldLogger) (*clusterNode, error) {
	return nil, nil
}

func (*clusterNode) join(*arbiter.Server, **worker.Pool, time.Duration, prometheus.Registerer) error {
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

func clusterStatus(*cli.Context) error {
	return &usageError{msg: "this gdirty was built without cluster support (-tags nocluster)"}
}
