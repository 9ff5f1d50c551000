package main

import (
	"testing"
	"time"
)

// The expected strings are what CPython's logging.Formatter prints for the
// same record (checked end to end against Python in tests/test_logging.py);
// here the parser's edge cases.
func TestPyFormatEdges(t *testing.T) {
	at := time.Date(2026, 12, 1, 22, 23, 53, 123_000_000, time.UTC)
	rec := &pyRecord{name: "gunicorn.error", levelno: 30, message: "m", at: at, pid: 42, start: at}
	df := gunicornDatefmt
	cases := []struct{ format, want string }{
		{gunicornErrorFmt, "[2026-12-01 22:23:53 +0000] [42] [WARNING] m"},
		{"%(levelname)-9s|", "WARNING  |"},
		{"%(levelname)9s|", "  WARNING|"},
		{"%(process)05d %(levelno)+d", "00042 +30"},
		{"%(msecs)03d %(created).3f", "123 1796163833.123"},
		{"100%% %(message)r", "100% 'm'"},
		{"%(nosuch)s %(", "%(nosuch) %("},
		{"%s %(message)", "%s %(message)"},
		{"%(levelname).4s", "WARN"},
	}
	for _, c := range cases {
		if got := parsePyFormat(c.format, &df).format(rec); got != c.want {
			t.Errorf("%q: got %q, want %q", c.format, got, c.want)
		}
	}
	if got := pyAsctime(at, nil); got != "2026-12-01 22:23:53,123" {
		t.Errorf("default asctime: %q", got)
	}
	if got := pyStrftime(at, "%d/%b/%Y:%H:%M:%S %j %p %q %"); got != "01/Dec/2026:22:23:53 335 PM %q %" {
		t.Errorf("strftime: %q", got)
	}
}

// Formats come from the user's logconfig: no input may panic.
func FuzzPyFormat(f *testing.F) {
	for _, s := range []string{gunicornErrorFmt, "%(levelname)-8s %(message)s", "%%(%(", "%(x)999999999999999999999d"} {
		f.Add(s, gunicornDatefmt)
	}
	at := time.Date(2026, 12, 1, 22, 23, 53, 0, time.UTC)
	f.Fuzz(func(t *testing.T, format, datefmt string) {
		rec := &pyRecord{name: "n", levelno: 20, message: "m", at: at, pid: 1, start: at}
		_ = parsePyFormat(format, &datefmt).format(rec)
		_ = pyStrftime(at, datefmt)
	})
}
