package compat

import (
	"testing"
	"unicode"
)

type reprFile struct {
	goldenMeta
	PythonVersion  string `json:"python_version"`
	UnicodeVersion string `json:"unicode_version"`
	Values         []struct {
		Kind  string `json:"kind"`
		Input tagged `json:"input"`
		Repr  string `json:"repr"`
		Str   string `json:"str"`
	} `json:"values"`
	PrintableRanges  [][2]rune `json:"printable_ranges"`
	UnassignedRanges [][2]rune `json:"unassigned_ranges"`
}

func loadRepr(t *testing.T) *reprFile {
	var rf reprFile
	loadGolden(t, "repr_vectors.json", &rf)
	if len(rf.Values) == 0 || len(rf.PrintableRanges) == 0 {
		t.Fatal("empty repr vectors")
	}
	return &rf
}

// PyRepr, PyStr, PyFloatRepr and PyBytesRepr against CPython's repr()/str().
func TestPyReprGolden(t *testing.T) {
	rf := loadRepr(t)
	floats := 0
	for _, c := range rf.Values {
		v := mustBuild(t, c.Input)
		if got := PyRepr(v); got != c.Repr {
			t.Errorf("PyRepr(%s %s)\n got: %s\nwant: %s", c.Kind, c.Input.T, got, c.Repr)
		}
		if got := PyStr(v); got != c.Str {
			t.Errorf("PyStr(%s)\n got: %s\nwant: %s", c.Kind, got, c.Str)
		}
		switch x := v.(type) {
		case float64:
			floats++
			if got := PyFloatRepr(x); got != c.Repr {
				t.Errorf("PyFloatRepr(%x) = %s, want %s", c.Input.Bits, got, c.Repr)
			}
		case []byte:
			if got := PyBytesRepr(x); got != c.Repr {
				t.Errorf("PyBytesRepr(%x) = %s, want %s", x, got, c.Repr)
			}
		}
	}
	if floats < 300 {
		t.Fatalf("only %d float vectors", floats)
	}
}

func inRanges(rs [][2]rune, r rune) bool {
	lo, hi := 0, len(rs)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case r < rs[m][0]:
			hi = m
		case r > rs[m][1]:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// isPrintable (which decides what repr() escapes) against Python's
// str.isprintable() for every code point. The only tolerated difference is
// a character Python's Unicode database does not have yet but Go's newer
// one does.
func TestIsPrintableAllCodePoints(t *testing.T) {
	rf := loadRepr(t)
	newer := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue // not representable in a Go string
		}
		py := inRanges(rf.PrintableRanges, r)
		if isPrintable(r) == py {
			continue
		}
		if !py && inRanges(rf.UnassignedRanges, r) && unicode.Version != rf.UnicodeVersion {
			newer++ // assigned after Python's Unicode version
			continue
		}
		t.Errorf("U+%04X: isPrintable %v, Python %s says %v", r, isPrintable(r), rf.PythonVersion, py)
	}
	if newer > 0 {
		t.Logf("%d code points are printable in Go (Unicode %s) but unassigned in Python %s (Unicode %s); repr() escapes them in Python",
			newer, unicode.Version, rf.PythonVersion, rf.UnicodeVersion)
	}
}

// A real U+FFFD is printable (Python shows it as is); an invalid byte in a
// Go string, which Python strings cannot hold, is shown as '\ufffd'.
func TestPyReprReplacementCharacter(t *testing.T) {
	if got := PyRepr("a\uFFFDb"); got != "'a\uFFFDb'" {
		t.Errorf("PyRepr(U+FFFD) = %s", got)
	}
	if got := PyRepr("a\xffb"); got != `'a\ufffdb'` {
		t.Errorf("PyRepr(invalid byte) = %s", got)
	}
}
