package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestParseProcStatCommWithParens(t *testing.T) {
	line := "4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 1234 99999999 321 18446744073709551615 1 1 0 0 0 0 0 0 0\n"
	st, ok := parseProcStat([]byte(line))
	if !ok || st.ppid != 17 || st.rss != 321 {
		t.Fatalf("parsed %+v, %v; want ppid 17, rss 321", st, ok)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 2", "1 (x) S z 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"} {
		if _, ok := parseProcStat([]byte(bad)); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

// A fake /proc: 10 -> 11 -> 12 and 10 -> 13; 20 alone; 30 unrelated.
func TestTreeRSSSumsDescendants(t *testing.T) {
	dir := t.TempDir()
	procs := []struct{ pid, ppid, rss int }{{10, 1, 100}, {11, 10, 20}, {12, 11, 3}, {13, 10, 4}, {20, 1, 7}, {30, 1, 1000}}
	for _, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(p.pid))
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(p.pid) + " (py thon) S " + strconv.Itoa(p.ppid) + " 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 " + strconv.Itoa(p.rss) + " 0 0\n"
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "self"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := treeRSS(dir, []int{10, 20, 99})
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	if got[10] != 127*page || got[20] != 7*page {
		t.Fatalf("tree rss %v, want 10: %d, 20: %d", got, 127*page, 7*page)
	}
	if _, ok := got[99]; ok {
		t.Fatal("a missing root was reported")
	}
}

func TestProcTreeRSSOfThisProcess(t *testing.T) {
	got, err := procTreeRSS([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if got[os.Getpid()] <= 0 {
		t.Fatalf("own resident memory %v", got)
	}
}

// /proc is the kernel's, but a process names itself (comm): any bytes
// must parse or be refused, never panic, and a parse must be sane.
func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 1234 99999999 321 0 0\n"))
	f.Add([]byte("1 ()) S 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, ok := parseProcStat(data)
		if ok && st.rss < 0 {
			t.Fatalf("negative rss from %q", data)
		}
	})
}
