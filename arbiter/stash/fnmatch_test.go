package stash

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Every expected result here comes from CPython's fnmatch.fnmatch, written
// by testdata/golden/gen_stash_vectors.py.
func TestFnMatchGolden(t *testing.T) {
	data, err := os.ReadFile("../../testdata/golden/fnmatch_vectors.json")
	if err != nil {
		t.Fatalf("read golden file (regenerate with testdata/golden/gen_stash_vectors.py): %v", err)
	}
	var v struct {
		Cases [][3]any `json:"cases"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) < 10000 {
		t.Fatalf("only %d fnmatch vectors", len(v.Cases))
	}
	failed := 0
	for _, c := range v.Cases {
		name, pat, want := c[0].(string), c[1].(string), c[2].(bool)
		got, err := FnMatch(name, pat)
		if err != nil {
			t.Errorf("FnMatch(%q, %q): %v (Python raises nothing)", name, pat, err)
			failed++
		} else if got != want {
			t.Errorf("FnMatch(%q, %q) = %v, Python says %v", name, pat, got, want)
			failed++
		}
		if failed > 20 {
			t.Fatal("too many failures")
		}
	}
}

func TestFnMatchExamples(t *testing.T) {
	cases := []struct {
		name, pat string
		want      bool
	}{
		{"user:1", "user:*", true},
		{"a/b/c", "a*c", true}, // '*' crosses '/', unlike path.Match
		{"a/b", "a?b", true},
		{"a\nb", "a*b", true},
		{"abc", "ABC", false}, // POSIX: no case folding
		{"b", "[abc]", true},
		{"d", "[!abc]", true},
		{"a", "[!abc]", false},
		{"]", "[]]", true},
		{"[", "[", true},      // unterminated '[' is literal
		{"[a", "[a", true},    // ... and so is what follows
		{"x", "[z-a]", false}, // reversed range: empty set
		{"!", "[!]", false},   // "[!]" is unterminated: literal "[!]"
		{"[!]", "[!]", true},
		{"-", "[a-]", true},
		{"\\", "[\\]", true},
		{"é", "[à-ÿ]", true},
	}
	for _, c := range cases {
		got, err := FnMatch(c.name, c.pat)
		if err != nil || got != c.want {
			t.Errorf("FnMatch(%q, %q) = %v, %v; want %v", c.name, c.pat, got, err, c.want)
		}
	}
}

// oracle builds a Go regexp from the compiled tokens, checking the glob
// walk in Match against an independent matcher.
func oracle(p *Pattern) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for _, tk := range p.toks {
		switch tk.kind {
		case tokLit:
			fmt.Fprintf(&b, `\x{%x}`, tk.r)
		case tokAny:
			b.WriteString(`.`)
		case tokNever:
			b.WriteString(`[^\x00-\x{10FFFF}]`)
		case tokStar:
			b.WriteString(`.*`)
		case tokSet:
			b.WriteByte('[')
			if tk.set.negate {
				b.WriteByte('^')
			}
			for _, it := range tk.set.items {
				fmt.Fprintf(&b, `\x{%x}-\x{%x}`, it.lo, it.hi)
			}
			b.WriteByte(']')
		}
	}
	b.WriteString(`)\z`)
	return regexp.MustCompile(b.String())
}

func FuzzFnMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"user:1", "user:*"}, {"a/b", "*/*"}, {"x", "[!a-c]"}, {"]", "[]]"},
		{"a-b", "[a-]*"}, {"é", "[à-ÿ]"}, {"", "[!]-!]"}, {"q", "[!]-!]"},
		{"abcabd", "*ab?*d"}, {"a\nb", "a?b"}, {"&", "[a&&b]"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, pat string) {
		if !utf8.ValidString(name) || !utf8.ValidString(pat) {
			t.Skip() // TLV strings are valid UTF-8
		}
		p, err := CompilePattern(pat)
		if err != nil {
			// CPython's translate compiles every pattern.
			t.Fatalf("CompilePattern(%q): %v", pat, err)
		}
		got := p.Match(name)
		if want := oracle(p).MatchString(name); got != want {
			t.Fatalf("Match(%q) with %q = %v, regexp oracle says %v", name, pat, got, want)
		}
		// Every pattern matches itself once its metacharacters are gone.
		if !strings.ContainsAny(pat, "*?[") {
			if ok, _ := FnMatch(pat, pat); !ok {
				t.Fatalf("literal pattern %q does not match itself", pat)
			}
		}
	})
}
