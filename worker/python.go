package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/gdirty/gdirty/compat"
)

// Python describes how to run the Python side: the interpreter, the
// extracted shim and the gunicorn-style arguments (-c CONFIG plus any
// --dirty-* overrides) that every Python process evaluates the config with.
type Python struct {
	Interpreter  string
	ShimDir      string
	GunicornArgs []string
	// Env is the full environment for Python processes.
	Env []string
}

func (p Python) command(module string, args ...string) *exec.Cmd {
	argv := append([]string{"-c", bootstrap(p.ShimDir, module)}, args...)
	cmd := exec.Command(p.Interpreter, argv...)
	cmd.Env = p.Env
	return cmd
}

// ConfigError is a configuration the loader refused; Message is the
// loader's own explanation (gunicorn's message, or the failing app).
type ConfigError struct {
	Message string
}

func (e *ConfigError) Error() string { return e.Message }

// LoadSettings evaluates the gunicorn configuration through the shim's
// loader (gunicorn's own config machinery) and returns the settings.
func (p Python) LoadSettings(ctx context.Context) (*compat.Settings, error) {
	cmd := p.command("gdirty_pyshim.config", p.GunicornArgs...)
	stop := context.AfterFunc(ctx, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer stop()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = fmt.Sprintf("config loader exited with status %d", exit.ExitCode())
			}
			return nil, &ConfigError{Message: msg}
		}
		return nil, fmt.Errorf("run python config loader (%s): %w", p.Interpreter, err)
	}
	return compat.ParseSettings(stdout.Bytes())
}
