package compat

import (
	"fmt"
	"strconv"
	"strings"
)

// AppSpec is a parsed dirty_apps entry.
type AppSpec struct {
	// ImportPath is "module:Class", the key clients use as app_path.
	ImportPath string
	// Workers is the number of workers that load the app; 0 means all.
	Workers int
	// Spec is the entry as written in the config.
	Spec string
}

// ParseAppSpec parses "module:Class" or "module:Class:N" with gunicorn's
// rules and messages (gunicorn.dirty.app.parse_dirty_app_spec).
func ParseAppSpec(spec string) (AppSpec, error) {
	//lint:ignore ST1005 gunicorn's exact message, shown to users as is
	invalid := fmt.Errorf("Invalid import path format: %s. Expected 'module.path:ClassName' or 'module.path:ClassName:N'", spec)
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 2:
		return AppSpec{ImportPath: spec, Spec: spec}, nil
	case 3:
		n, err := strconv.Atoi(strings.TrimSpace(parts[2]))
		if err != nil {
			//lint:ignore ST1005 gunicorn's exact message
			return AppSpec{}, fmt.Errorf("Invalid worker count in spec: %s. Expected integer, got '%s'", spec, parts[2])
		}
		if n < 1 {
			//lint:ignore ST1005 gunicorn's exact message
			return AppSpec{}, fmt.Errorf("Invalid worker count in spec: %s. Worker count must be >= 1, got %d", spec, n)
		}
		return AppSpec{ImportPath: parts[0] + ":" + parts[1], Workers: n, Spec: spec}, nil
	default:
		return AppSpec{}, invalid
	}
}
