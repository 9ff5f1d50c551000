package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/gdirty/gdirty/compat"
)

// Python logging levels, as gunicorn's loglevel names map to them.
var pyLevels = map[string]int{"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}

func pyLevelOf(l logrus.Level) int {
	switch l {
	case logrus.TraceLevel, logrus.DebugLevel:
		return 10
	case logrus.InfoLevel:
		return 20
	case logrus.WarnLevel:
		return 30
	case logrus.ErrorLevel:
		return 40
	}
	return 50
}

func logrusLevelOf(py int) logrus.Level {
	switch {
	case py <= 10:
		return logrus.DebugLevel
	case py <= 20:
		return logrus.InfoLevel
	case py <= 30:
		return logrus.WarnLevel
	case py <= 40:
		return logrus.ErrorLevel
	}
	// CRITICAL: logrus has no level between Error and Fatal; Fatal is
	// only used here as a threshold, gdirty never logs at it.
	return logrus.FatalLevel
}

// parseLevel checks a gunicorn loglevel name.
func parseLevel(level string) (int, error) {
	if level == "" {
		return 20, nil
	}
	py, ok := pyLevels[strings.ToLower(level)]
	if !ok {
		return 0, &usageError{msg: fmt.Sprintf("unknown log level %q (debug, info, warning, error, critical)", level)}
	}
	return py, nil
}

func ptr[T any](v T) *T { return &v }

// setupLogging points gdirty's logger where gunicorn's error logger would
// write, with its formats (format "text") or as JSON lines ("json").
// level, when set, overrides the config's (gdirty's --log-level).
func setupLogging(settings *compat.Settings, level, format string) (*logrus.Logger, *logOutputs, error) {
	spec := settings.Log
	var warn string
	if spec == nil || spec.Error != "" {
		if spec != nil {
			warn = "gunicorn's logger setup failed for this config (" + spec.Error + "); gdirty logs with gunicorn's default format"
		}
		// A loader without log introspection: errorlog and loglevel only.
		py, err := parseLevel(settings.Loglevel)
		if err != nil {
			py = 20
		}
		h := compat.LogHandler{Kind: "stderr", Format: gunicornErrorFmt, Datefmt: ptr(gunicornDatefmt)}
		if settings.Errorlog != "" && settings.Errorlog != "-" {
			h.Kind, h.Path = "file", settings.Errorlog
		}
		spec = &compat.LogSpec{Level: py, Errorlog: settings.Errorlog, Handlers: []compat.LogHandler{h}}
	}
	log, outs, err := buildLogger(spec, level, format, nil)
	if err != nil {
		return nil, nil, err
	}
	if warn != "" {
		log.Warn(warn)
	}
	if len(spec.Unsupported) > 0 {
		log.Warnf("gdirty does not write to these gunicorn.error handlers: %s", strings.Join(spec.Unsupported, ", "))
	}
	return log, outs, nil
}

func buildLogger(spec *compat.LogSpec, level, format string, out io.Writer) (*logrus.Logger, *logOutputs, error) {
	py := spec.Level
	if level != "" {
		var err error
		if py, err = parseLevel(level); err != nil {
			return nil, nil, err
		}
	}
	outs := &logOutputs{}
	if spec.CaptureOutput && spec.Errorlog != "" && spec.Errorlog != "-" {
		f, err := openLogFile(spec.Errorlog)
		if err != nil {
			return nil, nil, err
		}
		outs.capture = f
	}
	files := map[string]*logFile{}
	for _, h := range spec.Handlers {
		s := &logSink{level: h.Level, format: parsePyFormat(h.Format, h.Datefmt)}
		switch h.Kind {
		case "stderr":
			s.w = os.Stderr
		case "stdout":
			s.w = os.Stdout
		case "file":
			f := files[h.Path]
			if f == nil {
				var err error
				if f, err = openLogFile(h.Path); err != nil {
					return nil, nil, err
				}
				files[h.Path] = f
				outs.files = append(outs.files, f)
			}
			s.w = f
		default:
			continue // "null"
		}
		if out != nil {
			s.w = out
		}
		outs.sinks = append(outs.sinks, s)
	}
	log := logrus.New()
	log.Out = io.Discard
	log.Formatter = discard{}
	log.Level = logrusLevelOf(py)
	outs.json = format == "json"
	outs.pid = os.Getpid()
	outs.start = time.Now()
	log.AddHook(outs)
	return log, outs, nil
}

// logOutputs writes each entry to every handler it passes, in that
// handler's format, and reopens the files on USR1 as gunicorn does.
type logOutputs struct {
	sinks   []*logSink
	files   []*logFile
	capture *logFile // capture_output: stdout and stderr go to the errorlog
	json    bool
	pid     int
	start   time.Time
}

type logSink struct {
	w      io.Writer
	level  int
	format *pyFormat
}

func (o *logOutputs) Levels() []logrus.Level { return logrus.AllLevels }

// Fire formats the entry as Python's logging would and writes it.
func (o *logOutputs) Fire(e *logrus.Entry) error {
	py := pyLevelOf(e.Level)
	msg := e.Message
	if len(e.Data) > 0 && !o.json {
		keys := make([]string, 0, len(e.Data))
		for k := range e.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			msg += fmt.Sprintf(" %s=%v", k, e.Data[k])
		}
	}
	rec := &pyRecord{name: "gunicorn.error", levelno: py, message: msg, at: e.Time, pid: o.pid, start: o.start}
	var jsonLine []byte
	if o.json {
		b, err := (&logrus.JSONFormatter{}).Format(e)
		if err != nil {
			return err
		}
		jsonLine = b
	}
	for _, s := range o.sinks {
		if py < s.level {
			continue
		}
		line := jsonLine
		if line == nil {
			line = []byte(s.format.format(rec) + "\n")
		}
		_, _ = s.w.Write(line)
	}
	return nil
}

// applyCapture sends gdirty's stdout and stderr (and so its children's)
// to the errorlog, as gunicorn's capture_output does for its processes. It
// returns where gdirty's own stdout output (the socket line) still goes: a
// copy of the original stdout when captured, else stdout as given.
func (o *logOutputs) applyCapture(stdout io.Writer) (io.Writer, error) {
	if o == nil || o.capture == nil {
		return stdout, nil
	}
	var saved io.Writer = stdout
	if stdout == io.Writer(os.Stdout) {
		fd, err := unix.Dup(1)
		if err != nil {
			return nil, fmt.Errorf("capture_output: keep stdout: %w", err)
		}
		unix.CloseOnExec(fd)
		saved = os.NewFile(uintptr(fd), "stdout")
	}
	if err := o.capture.dupOnto(1, 2); err != nil {
		return nil, err
	}
	return saved, nil
}

// Reopen reopens every log file (after logrotate moved them).
func (o *logOutputs) Reopen() error {
	if o == nil {
		return nil
	}
	var first error
	for _, f := range o.files {
		if err := f.Reopen(); err != nil && first == nil {
			first = err
		}
	}
	if o.capture != nil {
		if err := o.capture.Reopen(); err != nil && first == nil {
			first = err
		} else if err := o.capture.dupOnto(1, 2); err != nil && first == nil {
			first = err
		}
	}
	return first
}

type discard struct{}

func (discard) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// logFile is an errorlog file that USR1 can reopen (log rotation), as
// gunicorn's errorlog setting behaves.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	lf := &logFile{path: path}
	if err := lf.Reopen(); err != nil {
		return nil, err
	}
	return lf, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen closes and reopens the file (after logrotate moved it).
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open errorlog %s: %w", l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// dupOnto makes the given descriptors refer to the file.
func (l *logFile) dupOnto(fds ...int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range fds {
		if err := unix.Dup3(int(l.f.Fd()), fd, 0); err != nil {
			return fmt.Errorf("capture_output: redirect fd %d to %s: %w", fd, l.path, err)
		}
	}
	return nil
}
