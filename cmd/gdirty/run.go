package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/arbiter/stash"
	"github.com/gdirty/gdirty/worker"
)

func runArbiter(c *cli.Context) error {
	if c.Args().Len() > 0 && c.Args().First() == "--" {
		return &usageError{msg: "expected a command after --"}
	}
	opts, err := readOptions(c)
	if err != nil {
		return err
	}
	// The lean build hands cluster work and --metrics-bind to
	// gdirty-cluster before it starts anything (handoff.go);
	// gunicorn.conf.py is checked once it is read.
	if err := fullBuildHandoff(c, clusterFlags(), opts.clusterSettings, opts.GdirtyConfig, nil); err != nil {
		return err
	}
	if _, err := exec.LookPath(opts.Python); err != nil {
		return &usageError{msg: fmt.Sprintf("python interpreter %q: %v (set --python)", opts.Python, err)}
	}
	runDir, err := os.MkdirTemp("", "gdirty-")
	if err != nil {
		return fmt.Errorf("create runtime directory: %w", err)
	}
	defer os.RemoveAll(runDir)

	shimDir, err := worker.ExtractShim(runDir)
	if err != nil {
		return err
	}
	socketPath := opts.Socket
	if socketPath == "" {
		socketPath = filepath.Join(runDir, "arbiter.sock")
	}
	if socketPath, err = filepath.Abs(socketPath); err != nil {
		return fmt.Errorf("socket path: %w", err)
	}
	py := worker.Python{
		Interpreter:  opts.Python,
		ShimDir:      shimDir,
		GunicornArgs: opts.GunicornArgs,
		Env:          append(os.Environ(), "GUNICORN_DIRTY_SOCKET="+socketPath),
	}

	settings, err := py.LoadSettings(c.Context)
	if err != nil {
		var ce *worker.ConfigError
		if errors.As(err, &ce) {
			return &usageError{msg: "bad configuration: " + oneLine(ce.Message)}
		}
		return err
	}
	conf, err := readConf(opts, settings)
	if err != nil {
		return err
	}
	csettings, err := opts.clusterSettings.withConf(conf.values, conf.path)
	if err != nil {
		return err
	}
	if err := fullBuildHandoff(c, nil, csettings, conf.path, func() { os.RemoveAll(runDir) }); err != nil {
		return err
	}
	copts, stashMode, err := clusterOptions(c, csettings)
	if err != nil {
		return err
	}
	if !copts.Enabled() && (settings.DirtyWorkers < 1 || len(settings.DirtyApps) == 0) {
		return &usageError{msg: fmt.Sprintf("%s: nothing to run: set dirty_apps and dirty_workers > 0 (got %d apps, %d workers)",
			opts.Config, len(settings.DirtyApps), settings.DirtyWorkers)}
	}
	own, err := resolveOwn(c, opts, settings, conf)
	if err != nil {
		return err
	}
	log, logOuts, err := setupLogging(settings, opts.LogLevel, opts.LogFormat)
	if err != nil {
		return err
	}
	// capture_output: from here on (fork server, hook host, workers) stdout
	// and stderr are the errorlog; the socket line still goes to the
	// original stdout.
	socketOut, err := logOuts.applyCapture(c.App.Writer)
	if err != nil {
		return err
	}
	for _, w := range own.Warnings {
		log.Warn(w)
	}
	// Only with --cluster / --cluster-listen: nothing cluster-related
	// exists otherwise.
	cn, err := connectCluster(copts, log)
	if err != nil {
		return err
	}
	defer cn.close()

	// gunicorn's orphan convention applies to an arbiter owned by a parent
	// (the one that dies and leaves it behind): only then is the well-known
	// PID file claimed, so standalone deployments never kill each other.
	parentGone := watchParent(c, log)
	if parentGone != nil && !c.Bool("no-pidfile") {
		pf, note, err := arbiter.ClaimPidfile(arbiter.PidfilePath(procName(settings)))
		if note != "" {
			log.Warn(note)
		}
		if err != nil {
			log.Warnf("%v", err)
		}
		defer pf.Remove()
	}

	var pool *worker.Pool
	hooks, err := arbiterHooks(py, settings, log, socketPath, &pool)
	if err != nil {
		return err
	}
	if hooks != nil {
		defer hooks.Close()
		if settings.Hooks["on_dirty_starting"] {
			hooks.Call("on_dirty_starting", nil)
		}
	}

	listener, err := arbiter.Listen(socketPath)
	if err != nil {
		return err
	}
	defer os.Remove(socketPath)
	if len(c.IntSlice("allow-uid")) > 0 {
		if err := arbiter.AllowUIDs(socketPath); err != nil {
			return err
		}
	}

	apps := settings.AppSpecs()
	appPaths := make([]string, len(apps))
	for i, a := range apps {
		appPaths[i] = a.ImportPath
	}
	timeout := time.Duration(settings.DirtyTimeout) * time.Second
	graceful := time.Duration(settings.DirtyGracefulTimeout) * time.Second
	// The stash, with the tables the apps declare in `stashes` existing
	// from the start (gunicorn documents this but never creates them).
	stashStore, err := newStash(stashMode, cn, opts.StashMaxBytes)
	if err != nil {
		return err
	}
	for _, a := range settings.DirtyApps {
		if err := stash.EnsureTables(stashStore, a.Stashes...); err != nil {
			return &usageError{msg: fmt.Sprintf("%s: stashes of %s: %v", opts.Config, a.ImportPath, err)}
		}
	}
	var srv *arbiter.Server
	metrics, reg, stopMetrics, err := newMetrics(c.String("metrics-bind"), appPaths, &srv, &pool, stashStore, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	srv = arbiter.NewServer(arbiter.Config{
		Timeout:   timeout,
		Threads:   settings.DirtyThreads,
		MaxQueue:  opts.MaxQueue,
		Log:       log,
		Apps:      appPaths,
		Stash:     stash.NewService(stashStore),
		Metrics:   metrics,
		AllowUIDs: c.IntSlice("allow-uid"),
		MaxConns:  c.Int("max-connections"),
	})
	spawner, err := newSpawner(c.String("spawn"), py, log)
	if err != nil {
		return err
	}
	defer spawner.Close()
	observers := worker.Observers{srv.Observer()}
	if hooks != nil {
		observers = append(observers, hooks.Observer(settings.Hooks))
	}
	poolApps := apps
	if settings.DirtyWorkers < 1 {
		poolApps = nil // a pure front (--cluster): every call goes remote
	}
	pool = worker.NewPool(worker.PoolConfig{
		Spawner:         spawner,
		Apps:            poolApps,
		Workers:         settings.DirtyWorkers,
		Timeout:         timeout,
		GracefulTimeout: graceful,
		Log:             log,
		Recycle:         own.Recycle,
		Devices:         own.Devices,
	}, observers)
	srv.SetPool(pool)
	if cn != nil {
		if err := cn.join(srv, &pool, timeout, reg); err != nil {
			return err
		}
	}

	log.Infof("gdirty %s starting (pid: %d), %d workers x %d threads, apps: %s",
		version, os.Getpid(), settings.DirtyWorkers, settings.DirtyThreads, strings.Join(appPaths, ", "))
	own.logSummary(log)
	// Caught before the socket line is printed: a signal sent the moment
	// it appears must be handled, never kill gdirty (it waits in sigs
	// until the server runs).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, handledSignals...)
	defer signal.Stop(sigs)
	// A gunicorn master running gdirty (master mode) exports the socket
	// itself; the line would only be noise in its output.
	if os.Getenv("GDIRTY_QUIET_SOCKET_LINE") == "" {
		fmt.Fprintf(socketOut, "GUNICORN_DIRTY_SOCKET=%s\n", socketPath)
	}
	if closer, ok := socketOut.(io.Closer); ok && socketOut != c.App.Writer {
		closer.Close()
	}
	log.Infof("Dirty arbiter listening on %s", socketPath)

	defer startProfile(log)()

	st := &stack{log: log, errorlog: logOuts, srv: srv, pool: pool, listener: listener, graceful: graceful, parentGone: parentGone}
	if c.Args().Len() > 0 {
		if st.child, st.childDone, err = startGunicorn(c.Args().Slice(), socketPath); err != nil {
			listener.Close()
			return err
		}
		log.Infof("Started %s (pid: %d) with GUNICORN_DIRTY_SOCKET=%s and its own dirty pool off", c.Args().First(), st.child.Process.Pid, socketPath)
	}
	return st.run(sigs)
}

// oneLine reduces the loader's message to the line that says what is wrong;
// for a Python traceback that is the last line.
func oneLine(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	first := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[0]), "Error:"))
	if len(lines) == 1 {
		return first
	}
	last := strings.TrimSpace(lines[len(lines)-1])
	if strings.HasPrefix(strings.TrimSpace(lines[1]), "Traceback") || strings.HasPrefix(last, "caused by:") {
		return first + ": " + strings.TrimPrefix(last, "caused by: ")
	}
	return first
}
