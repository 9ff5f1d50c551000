package main

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/worker"
)

// newSpawner picks how workers start. The fork server is the default; if
// it cannot start, gdirty falls back to exec'ing each worker.
func newSpawner(mode string, py worker.Python, log *logrus.Logger) (worker.Spawner, error) {
	switch mode {
	case "exec":
		return worker.ExecSpawner{Python: py}, nil
	case "fork", "":
		fs, err := worker.NewForkServer(py, log)
		if err != nil {
			log.Warnf("Fork server unavailable (%v); starting each worker with exec", err)
			return worker.ExecSpawner{Python: py}, nil
		}
		return fs, nil
	default:
		return nil, &usageError{msg: fmt.Sprintf("--spawn must be fork or exec, got %q", mode)}
	}
}
