package compat

import (
	"encoding/json"
	"strconv"
	"testing"
)

type appSpecFile struct {
	goldenMeta
	Cases []struct {
		Spec       string       `json:"spec"`
		OK         bool         `json:"ok"`
		ImportPath string       `json:"import_path"`
		Workers    *json.Number `json:"workers"`
		ErrorType  string       `json:"error_type"`
		Message    string       `json:"message"`
	} `json:"cases"`
}

// Where ParseAppSpec knowingly differs from gunicorn's parse_dirty_app_spec:
// the worker count goes through Python's int(), which also accepts
// underscores, non-ASCII decimal digits and arbitrarily large values; Go
// uses strconv.Atoi. Each entry must still differ (or be removed).
var knownAppSpecDiffs = map[string]string{
	"a:B:3_000":                "Python int() accepts digit-group underscores",
	"a:B:\u0663":               "Python int() accepts Arabic-Indic digits",
	"a:B:\uff13":               "Python int() accepts fullwidth digits",
	"a:B:99999999999999999999": "Python int() is unbounded; Atoi overflows",
}

func TestParseAppSpecGolden(t *testing.T) {
	var af appSpecFile
	loadGolden(t, "appspec_vectors.json", &af)
	if len(af.Cases) < 20 {
		t.Fatalf("only %d app spec vectors", len(af.Cases))
	}
	for _, c := range af.Cases {
		got, err := ParseAppSpec(c.Spec)
		var diff string
		switch {
		case c.OK && err != nil:
			diff = "Go error " + err.Error()
		case c.OK && (got.ImportPath != c.ImportPath || got.Spec != c.Spec):
			diff = "Go import path " + got.ImportPath
		case c.OK && c.Workers == nil && got.Workers != 0:
			diff = "Go limits workers"
		case c.OK && c.Workers != nil && strconv.Itoa(got.Workers) != c.Workers.String():
			diff = "Go worker count differs"
		case !c.OK && err == nil:
			diff = "Go accepts it"
		case !c.OK && err.Error() != c.Message:
			diff = "Go message " + err.Error()
		}
		why, known := knownAppSpecDiffs[c.Spec]
		switch {
		case diff != "" && !known:
			t.Errorf("ParseAppSpec(%q): %s; gunicorn: ok=%v import_path=%q workers=%v message=%q",
				c.Spec, diff, c.OK, c.ImportPath, c.Workers, c.Message)
		case diff == "" && known:
			t.Errorf("ParseAppSpec(%q) now matches gunicorn; drop it from knownAppSpecDiffs", c.Spec)
		case known:
			t.Logf("known difference for %q (%s): %s", c.Spec, why, diff)
		}
		if !c.OK && c.ErrorType != "DirtyAppError" {
			t.Errorf("%q: gunicorn raised %s", c.Spec, c.ErrorType)
		}
	}
}
