package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/worker"
)

// stack is a running gdirty: the socket server, the worker pool and, in
// one-command mode, the gunicorn master gdirty started.
type stack struct {
	log        *logrus.Logger
	errorlog   *logOutputs
	srv        *arbiter.Server
	pool       *worker.Pool
	listener   net.Listener
	graceful   time.Duration
	parentGone <-chan struct{}
	// child is the gunicorn master in one-command mode (nil otherwise).
	child     *exec.Cmd
	childDone chan error
}

// childExitError carries gunicorn's exit status out of one-command mode.
type childExitError struct{ code int }

func (e *childExitError) Error() string { return fmt.Sprintf("gunicorn exited with status %d", e.code) }

// signals gdirty handles; it must never die of one gunicorn's tooling sends.
var handledSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT,
	syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGWINCH}

// run serves until a stop signal, the parent's death or (one-command mode)
// gunicorn's exit. TERM and INT stop gracefully: no new calls, calls in
// flight finish (up to the graceful timeout), then the workers stop. QUIT
// stops at once. In one-command mode stop signals go to gunicorn first and
// the pool stops once gunicorn has exited.
func (st *stack) run(sigs <-chan os.Signal) error {
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	poolCtx, stopPool := context.WithCancel(context.Background())
	defer stopPool()

	served := make(chan error, 1)
	go func() { served <- st.srv.Serve(serveCtx, st.listener) }()
	pooled := make(chan error, 1)
	go func() { pooled <- st.pool.Run(poolCtx) }()

	var result error
	fast := false
wait:
	for {
		select {
		case sig := <-sigs:
			s := sig.(syscall.Signal)
			if st.child != nil {
				st.forward(s)
				if s == syscall.SIGQUIT {
					fast = true
				}
				if isStop(s) {
					continue // the pool stops when gunicorn has exited
				}
			}
			switch s {
			case syscall.SIGTERM, syscall.SIGINT:
				st.log.Infof("Received %s: graceful shutdown (up to %s)", signalName(s), st.graceful)
				break wait
			case syscall.SIGQUIT:
				st.log.Infof("Received %s: fast shutdown", signalName(s))
				fast = true
				break wait
			default:
				handleSignal(st.log, st.errorlog, st.pool, s, st.child != nil)
			}
		case err := <-st.childDone:
			st.childDone = nil
			result = childResult(err)
			st.log.Infof("%v: stopping the dirty pool", result)
			break wait
		case <-st.parentGone:
			st.log.Warnf("Parent process exited: graceful shutdown (up to %s)", st.graceful)
			break wait
		case err := <-served:
			served = nil
			st.log.Errorf("Socket server stopped: %v", err)
			result = err
			break wait
		}
	}

	if st.childDone != nil {
		// gdirty is stopping on its own (parent gone, socket failure):
		// gunicorn cannot work without it.
		st.forward(syscall.SIGTERM)
		<-st.childDone
	}
	stopServing()
	if served != nil && !fast {
		select {
		case <-served:
			served = nil
		case <-time.After(st.graceful):
			st.log.Warnf("Calls still running after %s; stopping workers", st.graceful)
		case sig := <-sigs:
			st.log.Infof("Received %s during shutdown: stopping now", signalName(sig))
		}
	}
	if fast {
		st.pool.Kill()
	}
	stopPool()
	<-pooled
	if served != nil {
		<-served
	}
	st.log.Infof("gdirty exiting (pid: %d)", os.Getpid())
	return result
}

func isStop(s syscall.Signal) bool {
	return s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGQUIT
}

// forward passes a signal to the gunicorn master (one-command mode).
func (st *stack) forward(s syscall.Signal) {
	if st.child == nil || st.childDone == nil {
		return
	}
	if err := st.child.Process.Signal(s); err != nil && !errors.Is(err, os.ErrProcessDone) {
		st.log.Warnf("Forwarding %s to gunicorn: %v", signalName(s), err)
	}
}

func childResult(err error) error {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return &childExitError{code: 0}
	case errors.As(err, &exit):
		code := exit.ExitCode()
		if code < 0 {
			code = 1
		}
		return &childExitError{code: code}
	default:
		return fmt.Errorf("gunicorn: %w", err)
	}
}

// handleSignal applies the signals that do not stop gdirty, following
// gunicorn's dirty arbiter: HUP reloads the workers, TTIN/TTOU scale by
// one (never below the largest per-app limit), USR1 reopens log files and
// is forwarded to the workers. USR2 is ignored: gunicorn's arbiter dies on
// it, gdirty must not. In one-command mode TTIN/TTOU belong to gunicorn
// (HTTP workers) and were forwarded there only.
func handleSignal(log *logrus.Logger, errorlog *logOutputs, pool *worker.Pool, sig syscall.Signal, withChild bool) {
	switch sig {
	case syscall.SIGHUP:
		log.Info("SIGHUP: reloading dirty workers")
		pool.Reload()
	case syscall.SIGTTIN, syscall.SIGTTOU:
		if withChild {
			return
		}
		scale(log, pool, sig)
	case syscall.SIGUSR1:
		log.Info("SIGUSR1: reopening log files")
		if errorlog != nil {
			if err := errorlog.Reopen(); err != nil {
				log.Errorf("SIGUSR1: %v", err)
			}
		}
		pool.Signal(syscall.SIGUSR1)
	default:
		if !withChild {
			log.Infof("Received %s: ignored", signalName(sig))
		}
	}
}

func scale(log *logrus.Logger, pool *worker.Pool, sig syscall.Signal) {
	if sig == syscall.SIGTTIN {
		r := pool.ScaleUp(1)
		if r.Changed == 0 {
			log.Warnf("SIGTTIN: no worker spawned: %s", r.Reason)
			return
		}
		log.Infof("SIGTTIN: Increasing dirty workers to %d", r.Target)
		return
	}
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
}

func signalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		return "SIG" + strings.ToUpper(strings.TrimPrefix(unix.SignalName(sig), "SIG"))
	}
	return s.String()
}

// startGunicorn starts the one-command mode's gunicorn master with the
// socket exported and gunicorn's own dirty pool disabled (through
// GUNICORN_CMD_ARGS, which beats the config file but not the command line,
// so it works whatever the command is: gunicorn, python -m gunicorn, a
// wrapper script).
func startGunicorn(args []string, socketPath string) (*exec.Cmd, chan error, error) {
	cmd := exec.Command(args[0], args[1:]...)
	env := os.Environ()
	cmdArgs := "--dirty-workers 0"
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GUNICORN_CMD_ARGS="); ok {
			cmdArgs = strings.TrimSpace(v + " " + cmdArgs)
			env = append(env[:i:i], env[i+1:]...)
			break
		}
	}
	cmd.Env = append(env, "GUNICORN_DIRTY_SOCKET="+socketPath, "GUNICORN_CMD_ARGS="+cmdArgs)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// gunicorn gets signals only through gdirty (a terminal's Ctrl-C reaches
	// gdirty's group), and dies with gdirty if gdirty is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done, nil
}
