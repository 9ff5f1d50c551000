package main

import (
	"os"
	"runtime/pprof"

	"github.com/sirupsen/logrus"
)

// startProfile writes a CPU profile to $GDIRTY_CPUPROFILE until stop is
// called (for benchmarking gdirty itself: go tool pprof bin/gdirty FILE).
func startProfile(log logrus.FieldLogger) (stop func()) {
	path := os.Getenv("GDIRTY_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warnf("GDIRTY_CPUPROFILE: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warnf("GDIRTY_CPUPROFILE: %v", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
