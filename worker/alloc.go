package worker

import "github.com/gdirty/gdirty/compat"

// appsForNewWorker decides which apps a new worker loads, exactly as
// gunicorn's arbiter (_get_apps_for_new_worker): every app without a limit,
// plus each limited app that has fewer workers than its limit. current
// counts the live (booting or serving) workers per app.
func appsForNewWorker(specs []compat.AppSpec, current map[string]int) []string {
	var apps []string
	for _, s := range specs {
		if s.Workers == 0 || current[s.ImportPath] < s.Workers {
			apps = append(apps, s.ImportPath)
		}
	}
	return apps
}

// minimumWorkers is gunicorn's floor for scaling down: the largest per-app
// limit, at least 1.
func minimumWorkers(specs []compat.AppSpec) int {
	m := 1
	for _, s := range specs {
		if s.Workers > m {
			m = s.Workers
		}
	}
	return m
}
