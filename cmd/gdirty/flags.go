package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter/stash"
)

func runFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "gunicorn.conf.py", Usage: "gunicorn config file to read (as gunicorn -c)"},
		&cli.StringFlag{Name: "socket", EnvVars: []string{"GDIRTY_SOCKET"}, Usage: "Unix socket to serve on (default: arbiter.sock in a fresh 0700 temp dir)"},
		&cli.StringFlag{Name: "python", EnvVars: []string{"GDIRTY_PYTHON"}, Value: "python3", Usage: "Python interpreter that has gunicorn and your apps installed"},
		&cli.StringFlag{Name: "log-level", EnvVars: []string{"GDIRTY_LOG_LEVEL"}, Usage: "debug, info, warning, error, critical (default: the config's loglevel)"},
		&cli.StringFlag{Name: "log-format", EnvVars: []string{"GDIRTY_LOG_FORMAT"}, Value: "text", Usage: "text or json"},
		&cli.IntFlag{Name: "max-queue", EnvVars: []string{"GDIRTY_MAX_QUEUE"}, Usage: "most calls that may wait for a free worker; more are refused at once (0: no bound)"},
		&cli.IntFlag{Name: "parent-pid", EnvVars: []string{"GDIRTY_PARENT_PID"}, Usage: "shut the pool down when this process exits (default: the parent, when gdirty was started by gunicorn)"},
		&cli.BoolFlag{Name: "no-pidfile", Usage: "do not write gunicorn's well-known dirty arbiter PID file (<tmp>/gunicorn-dirty-<proc_name>.pid)"},
		&cli.StringFlag{Name: "spawn", EnvVars: []string{"GDIRTY_SPAWN"}, Value: "fork", Usage: "how workers start: fork (from a fork server that imported the apps once: fast respawn) or exec (a fresh interpreter each time)"},
		&cli.Int64Flag{Name: "stash-max-bytes", EnvVars: []string{"GDIRTY_STASH_MAX_BYTES"}, Value: stash.DefaultMaxBytes, Usage: "memory bound of the stash (raw key and value bytes plus a fixed per-entry overhead); a put past it fails with StashError (0: no bound)"},
		&cli.StringFlag{Name: "metrics-bind", EnvVars: []string{"GDIRTY_METRICS_BIND"}, Usage: "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9191); off by default"},
		&cli.IntSliceFlag{Name: "allow-uid", Usage: "also serve clients running as this uid (repeatable; checked with SO_PEERCRED; the socket then becomes 0666 in a 0711 directory)"},
		&cli.IntFlag{Name: "max-connections", EnvVars: []string{"GDIRTY_MAX_CONNECTIONS"}, Value: 4096, Usage: "most client connections served at once; more get a clear error (0: no bound)"},
		&cli.StringFlag{Name: "gdirty-config", EnvVars: []string{"GDIRTY_CONFIG"}, Usage: "optional TOML file with gdirty's own settings (socket, python, log_level, log_format, max_queue, stash_max_bytes)"},
		// gunicorn's own flags, passed to gunicorn's config machinery so
		// they override the config file exactly as on gunicorn's command line.
		&cli.StringSliceFlag{Name: "dirty-app", Usage: "as gunicorn --dirty-app (repeatable)"},
		&cli.StringFlag{Name: "dirty-workers", Usage: "as gunicorn --dirty-workers"},
		&cli.StringFlag{Name: "dirty-threads", Usage: "as gunicorn --dirty-threads"},
		&cli.StringFlag{Name: "dirty-timeout", Usage: "as gunicorn --dirty-timeout"},
		&cli.StringFlag{Name: "dirty-graceful-timeout", Usage: "as gunicorn --dirty-graceful-timeout"},
	}
}

// options are gdirty's own settings after CLI > env > TOML > default.
type options struct {
	Config    string
	Socket    string `toml:"socket"`
	Python    string `toml:"python"`
	LogLevel  string `toml:"log_level"`
	LogFormat string `toml:"log_format"`
	MaxQueue  int    `toml:"max_queue"`
	// StashMaxBytes bounds the stash's memory (0: unbounded); nil in the
	// TOML means "not set there".
	StashMaxBytes     int64  `toml:"-"`
	TOMLStashMaxBytes *int64 `toml:"stash_max_bytes"`
	GunicornArgs      []string
	// GdirtyConfig is the TOML's path; ownTOML its gdirty_* settings.
	GdirtyConfig string `toml:"-"`
	ownTOML
	clusterSettings // cluster_flags.go: the cluster's TOML keys
}

func readOptions(c *cli.Context) (*options, error) {
	o := &options{}
	if path := c.String("gdirty-config"); path != "" {
		o.GdirtyConfig = path
		md, err := toml.DecodeFile(path, o)
		if err != nil {
			return nil, &usageError{msg: fmt.Sprintf("read %s: %v", path, err)}
		}
		if un := md.Undecoded(); len(un) > 0 {
			return nil, &usageError{msg: fmt.Sprintf("%s: unknown setting %q", path, un[0].String())}
		}
	}
	pick := func(name string, toml string) string {
		if c.IsSet(name) || toml == "" {
			return c.String(name)
		}
		return toml
	}
	o.Config = c.String("config")
	o.Socket = pick("socket", o.Socket)
	o.Python = pick("python", o.Python)
	o.LogLevel = pick("log-level", o.LogLevel)
	o.LogFormat = pick("log-format", o.LogFormat)
	if c.IsSet("max-queue") || o.MaxQueue == 0 {
		o.MaxQueue = c.Int("max-queue")
	}
	o.StashMaxBytes = c.Int64("stash-max-bytes")
	if !c.IsSet("stash-max-bytes") && o.TOMLStashMaxBytes != nil {
		o.StashMaxBytes = *o.TOMLStashMaxBytes
	}
	if o.StashMaxBytes < 0 {
		return nil, &usageError{msg: "--stash-max-bytes must be >= 0 (0: no bound)"}
	}
	if o.MaxQueue < 0 {
		return nil, &usageError{msg: "--max-queue must be >= 0"}
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return nil, &usageError{msg: fmt.Sprintf("--log-format must be text or json, got %q", o.LogFormat)}
	}
	if _, err := os.Stat(o.Config); err != nil {
		return nil, &usageError{msg: fmt.Sprintf("config file %s: %v", o.Config, err)}
	}

	o.GunicornArgs = []string{"-c", o.Config}
	for _, a := range c.StringSlice("dirty-app") {
		o.GunicornArgs = append(o.GunicornArgs, "--dirty-app", a)
	}
	for _, name := range []string{"dirty-workers", "dirty-threads", "dirty-timeout", "dirty-graceful-timeout"} {
		if c.IsSet(name) {
			v := c.String(name)
			if _, err := strconv.Atoi(v); err != nil {
				return nil, &usageError{msg: fmt.Sprintf("--%s: %q is not an integer", name, v)}
			}
			o.GunicornArgs = append(o.GunicornArgs, "--"+name, v)
		}
	}
	return o, nil
}
