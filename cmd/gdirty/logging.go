package main

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// newLogger builds gdirty's logger; level names are gunicorn's.
func newLogger(level, format string) (*logrus.Logger, error) {
	log := logrus.New()
	log.Out = os.Stderr
	switch strings.ToLower(level) {
	case "debug":
		log.Level = logrus.DebugLevel
	case "", "info":
		log.Level = logrus.InfoLevel
	case "warning", "warn":
		log.Level = logrus.WarnLevel
	case "error":
		log.Level = logrus.ErrorLevel
	case "critical":
		log.Level = logrus.FatalLevel
	default:
		return nil, &usageError{msg: fmt.Sprintf("unknown log level %q (debug, info, warning, error, critical)", level)}
	}
	if format == "json" {
		log.Formatter = &logrus.JSONFormatter{}
	} else {
		log.Formatter = &logrus.TextFormatter{FullTimestamp: true, DisableColors: true}
	}
	return log, nil
}

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
