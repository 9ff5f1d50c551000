package main

import (
	"os"

	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
)

// arbiterHooks starts the Python hook host when the config defines an
// arbiter-side hook (on_dirty_starting, dirty_post_fork, dirty_worker_exit);
// it returns nil when none is defined, so most deployments run no extra
// process. pool is read lazily: hooks see the current workers.
func arbiterHooks(py worker.Python, settings *compat.Settings, log logrus.FieldLogger, socketPath string, pool **worker.Pool) (*worker.HookHost, error) {
	needed := false
	for _, h := range worker.ArbiterHooks {
		needed = needed || settings.Hooks[h]
	}
	if !needed {
		return nil, nil
	}
	specs := make([]worker.AppSpecView, 0, len(settings.DirtyApps))
	for _, a := range settings.AppSpecs() {
		v := worker.AppSpecView{ImportPath: a.ImportPath, OriginalSpec: a.Spec}
		if a.Workers > 0 {
			n := a.Workers
			v.WorkerCount = &n
		}
		specs = append(specs, v)
	}
	state := func() worker.ArbiterState {
		s := worker.ArbiterState{
			PID:        os.Getpid(),
			PPID:       os.Getppid(),
			SocketPath: socketPath,
			NumWorkers: settings.DirtyWorkers,
			Alive:      true,
			AppSpecs:   specs,
			Workers:    []worker.WorkerView{},
		}
		if p := *pool; p != nil {
			s.NumWorkers = p.Target()
			for _, w := range p.Workers() {
				s.Workers = append(s.Workers, worker.ViewOf(w, true))
			}
		}
		return s
	}
	return worker.StartHookHost(py, log, state)
}
