package compat

// LogSpec is gunicorn's error logger ("gunicorn.error") as the user's
// config sets it up, read back by the pyshim loader after running
// gunicorn's own logger setup (errorlog, loglevel, logconfig,
// logconfig_dict, logconfig_json). gdirty writes its own lines through it.
type LogSpec struct {
	// Level is the logger's effective Python level (10 DEBUG ... 50 CRITICAL).
	Level         int          `json:"level"`
	Errorlog      string       `json:"errorlog"`
	CaptureOutput bool         `json:"capture_output"`
	Handlers      []LogHandler `json:"handlers"`
	// Unsupported names handler classes gdirty cannot follow (syslog, ...).
	Unsupported []string `json:"unsupported"`
	// Error is set when gunicorn's logger setup failed for this config.
	Error string `json:"error"`
}

// LogHandler is one Python logging handler a gunicorn.error record reaches.
type LogHandler struct {
	Kind    string  `json:"kind"` // "stderr", "stdout", "file" or "null"
	Path    string  `json:"path"` // for "file"
	Level   int     `json:"level"`
	Format  string  `json:"format"`  // %-style, as logging.Formatter's fmt
	Datefmt *string `json:"datefmt"` // strftime; nil: Python's default with ,msecs
}
