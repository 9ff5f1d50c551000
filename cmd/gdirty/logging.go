package main

import (
	"fmt"
	"os"
	"strings"

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
