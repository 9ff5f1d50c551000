package worker

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// procTreeRSS returns, for each root pid, the resident memory in bytes of
// the root and all its descendants (an app's helper processes, a
// tokenizer pool, a native library's children leak memory too). Roots
// that no longer exist are left out. It reads /proc once for all roots.
//
// Shared pages (e.g. those inherited from the fork server) count in every
// process that maps them, as RSS does; the bound is therefore a
// conservative one.
func procTreeRSS(roots []int) (map[int]int64, error) {
	return treeRSS("/proc", roots)
}

type procStat struct {
	ppid int
	rss  int64 // pages
}

func treeRSS(procDir string, roots []int) (map[int]int64, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procDir, err)
	}
	stats := make(map[int]procStat, len(entries))
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(procDir + "/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		st, ok := parseProcStat(data)
		if !ok {
			continue
		}
		stats[pid] = st
		children[st.ppid] = append(children[st.ppid], pid)
	}
	page := int64(os.Getpagesize())
	out := make(map[int]int64, len(roots))
	for _, root := range roots {
		if _, ok := stats[root]; !ok {
			continue
		}
		var total int64
		seen := map[int]bool{}
		stack := []int{root}
		for len(stack) > 0 {
			pid := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[pid] {
				continue
			}
			seen[pid] = true
			total += stats[pid].rss * page
			stack = append(stack, children[pid]...)
		}
		out[root] = total
	}
	return out, nil
}

// parseProcStat reads ppid (field 4) and rss (field 24) of /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseProcStat(data []byte) (procStat, bool) {
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return procStat{}, false
	}
	fields := bytes.Fields(data[end+1:])
	// fields[0] is field 3 (state): ppid is fields[1], rss fields[21].
	if len(fields) < 22 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(string(fields[1]))
	rss, err2 := strconv.ParseInt(string(fields[21]), 10, 64)
	if err1 != nil || err2 != nil || rss < 0 {
		return procStat{}, false
	}
	return procStat{ppid: ppid, rss: rss}, true
}
