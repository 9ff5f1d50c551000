package main

// The lean gdirty (-tags lean) hands any cluster work, and a metrics
// endpoint, to gdirty-cluster, the same gdirty built with everything
// linked (cluster support, the Prometheus client and an HTTP server): it
// execs it in place (same PID, argv and environment), so gunicorn's
// master, PID files and scripts that track gdirty's PID never notice.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
)

// clusterBinary is the name of the full gdirty build (cluster support and
// the metrics endpoint).
const clusterBinary = "gdirty-cluster"

// fullBuildHandoff execs gdirty-cluster when this is the lean build and a
// cluster setting is given: a flag or its environment variable, or t
// (from where, e.g. the TOML's path); or --metrics-bind. cleanup runs
// just before the exec, whose process skips this one's deferred calls.
// Returns nil when there is nothing to hand over.
func fullBuildHandoff(c *cli.Context, flags []cli.Flag, t clusterSettings, where string, cleanup func()) error {
	var why string
	if !clusterBuilt {
		why = clusterFlagSet(c, flags)
		if why == "" && t.any() {
			why = "cluster settings in " + where
		}
	}
	if why == "" && !metricsBuilt && c.String("metrics-bind") != "" {
		why = "--metrics-bind"
	}
	if why == "" {
		return nil
	}
	return execCluster(why, cleanup)
}

// execCluster replaces this process with gdirty-cluster; it returns only
// on failure.
func execCluster(why string, cleanup func()) error {
	bin, err := findClusterBinary()
	if err != nil {
		return &usageError{msg: fmt.Sprintf("%s: this is the lean gdirty (no cluster support, no metrics endpoint), and %v", why, err)}
	}
	if cleanup != nil {
		cleanup()
	}
	if err := syscall.Exec(bin, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("%s: exec %s: %w", why, bin, err)
	}
	return nil
}

// findClusterBinary looks next to this executable (a wheel or a build
// directory ships both), then on PATH.
func findClusterBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("this gdirty's own path is unknown: %w", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", fmt.Errorf("this gdirty's own path: %w", err)
	}
	bin := filepath.Join(filepath.Dir(self), clusterBinary)
	if _, statErr := os.Stat(bin); statErr != nil {
		if bin, err = exec.LookPath(clusterBinary); err != nil {
			return "", fmt.Errorf("%s is neither next to %s nor on PATH", clusterBinary, self)
		}
	}
	// A gdirty-cluster that is this very binary would exec itself forever.
	if real, err := filepath.EvalSymlinks(bin); err == nil && real == self {
		return "", fmt.Errorf("%s is this same lean gdirty (%s), not the full build", clusterBinary, bin)
	}
	return bin, nil
}
