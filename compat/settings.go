package compat

import (
	"encoding/json"
	"fmt"
)

// Settings are the effective gunicorn settings gdirty needs, as printed by
// the pyshim config loader (python -m gdirty_pyshim.config), which evaluates
// gunicorn.conf.py with gunicorn's own machinery.
type Settings struct {
	Config               string            `json:"config"`
	DirtyApps            []AppEntry        `json:"dirty_apps"`
	DirtyWorkers         int               `json:"dirty_workers"`
	DirtyThreads         int               `json:"dirty_threads"`
	DirtyTimeout         int64             `json:"dirty_timeout"`
	DirtyGracefulTimeout int64             `json:"dirty_graceful_timeout"`
	Env                  map[string]string `json:"env"`
	Chdir                string            `json:"chdir"`
	Pythonpath           *string           `json:"pythonpath"`
	ProcName             *string           `json:"proc_name"`
	Loglevel             string            `json:"loglevel"`
	Errorlog             string            `json:"errorlog"`
	Hooks                map[string]bool   `json:"hooks"`
	// Gdirty holds the config file's gdirty_* names (gdirty's own
	// settings, which gunicorn ignores), undecoded: gdirty checks them.
	Gdirty map[string]json.RawMessage `json:"gdirty"`
	Log    *LogSpec                   `json:"log"`
}

// AppEntry is one dirty_apps entry with its resolved worker count.
type AppEntry struct {
	Spec       string `json:"spec"`
	ImportPath string `json:"import_path"`
	// Workers is nil when every worker loads the app.
	Workers *int   `json:"workers"`
	Source  string `json:"source"` // "spec", "class" or "default"
	// Stashes lists the stash tables the app class declares.
	Stashes []string `json:"stashes"`
}

// ParseSettings decodes and checks the loader's JSON.
func ParseSettings(data []byte) (*Settings, error) {
	var s Settings
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode settings from config loader: %w", err)
	}
	if s.DirtyThreads < 1 {
		s.DirtyThreads = 1
	}
	for _, a := range s.DirtyApps {
		if a.ImportPath == "" {
			return nil, fmt.Errorf("dirty app %q has no import path", a.Spec)
		}
	}
	return &s, nil
}

// AppSpecs returns the apps as allocation specs (Workers 0 = all workers).
// An app listed twice keeps its first position and its last settings, as
// gunicorn's arbiter does when it fills its app_specs dict.
func (s *Settings) AppSpecs() []AppSpec {
	out := make([]AppSpec, 0, len(s.DirtyApps))
	pos := map[string]int{}
	for _, a := range s.DirtyApps {
		n := 0
		if a.Workers != nil {
			n = *a.Workers
		}
		spec := AppSpec{ImportPath: a.ImportPath, Workers: n, Spec: a.Spec}
		if i, ok := pos[a.ImportPath]; ok {
			out[i] = spec
			continue
		}
		pos[a.ImportPath] = len(out)
		out = append(out, spec)
	}
	return out
}
