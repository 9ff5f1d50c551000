package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/worker"
)

func runArbiter(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return &usageError{msg: fmt.Sprintf("unexpected argument %q (see gdirty --help)", c.Args().First())}
	}
	opts, err := readOptions(c)
	if err != nil {
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
	if settings.DirtyWorkers < 1 || len(settings.DirtyApps) == 0 {
		return &usageError{msg: fmt.Sprintf("%s: nothing to run: set dirty_apps and dirty_workers > 0 (got %d apps, %d workers)",
			opts.Config, len(settings.DirtyApps), settings.DirtyWorkers)}
	}
	level := opts.LogLevel
	if level == "" {
		level = settings.Loglevel
	}
	log, err := newLogger(level, opts.LogFormat)
	if err != nil {
		return err
	}
	var errorlog *logFile
	if settings.Errorlog != "" && settings.Errorlog != "-" {
		if errorlog, err = openLogFile(settings.Errorlog); err != nil {
			return err
		}
		log.Out = errorlog
	}

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

	apps := settings.AppSpecs()
	appPaths := make([]string, len(apps))
	for i, a := range apps {
		appPaths[i] = a.ImportPath
	}
	timeout := time.Duration(settings.DirtyTimeout) * time.Second
	graceful := time.Duration(settings.DirtyGracefulTimeout) * time.Second
	srv := arbiter.NewServer(arbiter.Config{
		Timeout:  timeout,
		Threads:  settings.DirtyThreads,
		MaxQueue: opts.MaxQueue,
		Log:      log,
		Apps:     appPaths,
	})
	observers := worker.Observers{srv.Observer()}
	if hooks != nil {
		observers = append(observers, hooks.Observer(settings.Hooks))
	}
	pool = worker.NewPool(worker.PoolConfig{
		Python:          py,
		Apps:            apps,
		Workers:         settings.DirtyWorkers,
		Timeout:         timeout,
		GracefulTimeout: graceful,
		Log:             log,
	}, observers)
	srv.SetPool(pool)

	log.Infof("gdirty %s starting (pid: %d), %d workers x %d threads, apps: %s",
		version, os.Getpid(), settings.DirtyWorkers, settings.DirtyThreads, strings.Join(appPaths, ", "))
	fmt.Fprintf(c.App.Writer, "GUNICORN_DIRTY_SOCKET=%s\n", socketPath)
	log.Infof("Dirty arbiter listening on %s", socketPath)

	return serve(log, errorlog, srv, pool, listener, graceful, parentGone)
}

// serve runs the server and the pool until a stop signal. TERM and INT stop
// gracefully: no new calls, calls in flight finish (up to the graceful
// timeout), then the workers stop. QUIT stops at once.
func serve(log *logrus.Logger, errorlog *logFile, srv *arbiter.Server, pool *worker.Pool, l net.Listener, graceful time.Duration, parentGone <-chan struct{}) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT,
		syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(sigs)

	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	poolCtx, stopPool := context.WithCancel(context.Background())
	defer stopPool()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, l) }()
	pooled := make(chan error, 1)
	go func() { pooled <- pool.Run(poolCtx) }()

	var serveErr error
	fast := false
wait:
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGTERM, syscall.SIGINT:
				log.Infof("Received %s: graceful shutdown (up to %s)", signalName(sig), graceful)
				break wait
			case syscall.SIGQUIT:
				log.Infof("Received %s: fast shutdown", signalName(sig))
				fast = true
				break wait
			default:
				handleSignal(log, errorlog, pool, sig.(syscall.Signal))
			}
		case <-parentGone:
			log.Warnf("Parent process exited: graceful shutdown (up to %s)", graceful)
			break wait
		case serveErr = <-served:
			served = nil
			log.Errorf("Socket server stopped: %v", serveErr)
			break wait
		}
	}

	stopServing()
	if served != nil && !fast {
		select {
		case <-served:
			served = nil
		case <-time.After(graceful):
			log.Warnf("Calls still running after %s; stopping workers", graceful)
		case sig := <-sigs:
			log.Infof("Received %s during shutdown: stopping now", signalName(sig))
		}
	}
	if fast {
		pool.Kill()
	}
	stopPool()
	<-pooled
	if served != nil {
		<-served
	}
	log.Infof("gdirty exiting (pid: %d)", os.Getpid())
	return serveErr
}

// handleSignal applies the signals that do not stop gdirty, following
// gunicorn's dirty arbiter: HUP reloads the workers, TTIN/TTOU scale by
// one (never below the largest per-app limit), USR1 reopens log files and
// is forwarded to the workers. USR2 is ignored: gunicorn's arbiter dies on
// it, gdirty must not.
func handleSignal(log *logrus.Logger, errorlog *logFile, pool *worker.Pool, sig syscall.Signal) {
	switch sig {
	case syscall.SIGHUP:
		log.Info("SIGHUP: reloading dirty workers")
		pool.Reload()
	case syscall.SIGTTIN:
		r := pool.ScaleUp(1)
		log.Infof("SIGTTIN: Increasing dirty workers to %d", r.Target)
		if r.Reason != "" {
			log.Warnf("SIGTTIN: no worker spawned: %s", r.Reason)
		}
	case syscall.SIGTTOU:
		if pool.Target() <= pool.Minimum() {
			log.Warnf("SIGTTOU: Cannot decrease below %d workers (required by app specs)", pool.Minimum())
			return
		}
		r := pool.ScaleDown(1)
		if r.Changed == 0 {
			log.Warnf("SIGTTOU: %s", r.Reason)
			return
		}
		log.Infof("SIGTTOU: Decreasing dirty workers to %d", r.Target)
	case syscall.SIGUSR1:
		log.Info("SIGUSR1: reopening log files")
		if errorlog != nil {
			if err := errorlog.Reopen(); err != nil {
				log.Errorf("SIGUSR1: %v", err)
			}
		}
		pool.Signal(syscall.SIGUSR1)
	default:
		log.Infof("Received %s: ignored", signalName(sig))
	}
}

func signalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		return "SIG" + strings.ToUpper(strings.TrimPrefix(unix.SignalName(sig), "SIG"))
	}
	return s.String()
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
