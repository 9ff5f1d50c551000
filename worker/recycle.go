package worker

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"
)

// RecyclePolicy says when a healthy worker is replaced by a fresh one
// (leaks in native libraries, caches, fragmentation). Zero values disable
// each rule.
type RecyclePolicy struct {
	// MaxRequests with MaxRequestsJitter: each worker serves
	// MaxRequests + a random 0..MaxRequestsJitter calls (gunicorn's
	// max_requests meaning), so workers started together do not all
	// recycle at once.
	MaxRequests       int64
	MaxRequestsJitter int64
	// MaxMemory bounds the resident memory (bytes) of a worker's whole
	// process tree, checked on the heartbeat cadence.
	MaxMemory int64
	// TTL bounds a worker's age; IdleTTL the time since its last call.
	TTL     time.Duration
	IdleTTL time.Duration
}

// Enabled reports whether any rule is on.
func (r RecyclePolicy) Enabled() bool {
	return r.MaxRequests > 0 || r.MaxMemory > 0 || r.TTL > 0 || r.IdleTTL > 0
}

// Why a worker is retired: the "reason" label of the retirement metric and
// the "retiring" field of STATUS.
const (
	RetireReload    = "reload"
	RetireScaleDown = "scale_down"
	RetireExcess    = "excess"
	RetireTimeout   = "timeout" // held a call past dirty_timeout
	RecycleRequests = "max_requests"
	RecycleMemory   = "max_memory"
	RecycleTTL      = "ttl"
	RecycleIdle     = "idle_ttl"
)

// RetireReasons lists every reason, for metrics that pre-create labels.
var RetireReasons = []string{RetireReload, RetireScaleDown, RetireExcess, RetireTimeout,
	RecycleRequests, RecycleMemory, RecycleTTL, RecycleIdle}

// usage is a worker's call accounting, updated on every call's end (no
// lock on that path).
type usage struct {
	served     atomic.Int64
	lastActive atomic.Int64 // unix nanoseconds of the last call's end
	limit      atomic.Int64 // max_requests drawn for this worker (0: none)
}

// Requests returns how many calls the worker finished.
func (p *Process) Requests() int64 { return p.use.served.Load() }

// RequestLimit returns the calls after which the worker is recycled (0: no
// limit).
func (p *Process) RequestLimit() int64 { return p.use.limit.Load() }

// RetireReason says why the worker is being replaced or retired ("" when
// it is not).
func (p *Process) RetireReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retireReason
}

func (p *Process) setRetireReason(r string) {
	p.mu.Lock()
	p.retireReason = r
	p.mu.Unlock()
}

// pending returns the calls the worker holds.
func (p *Process) pending() int {
	if p.link == nil {
		return 0
	}
	return p.link.Pending()
}

// callDone accounts a finished call; reaching max_requests wakes the pool
// at once instead of waiting for the next heartbeat check.
func (p *Pool) callDone(w *Process) {
	n := w.use.served.Add(1)
	w.use.lastActive.Store(time.Now().UnixNano())
	if lim := w.use.limit.Load(); lim > 0 && n == lim {
		p.poke()
	}
}

// drawLimit picks a new worker's max_requests: gunicorn's
// max_requests + randint(0, max_requests_jitter).
func (p *Pool) drawLimit() int64 {
	r := p.cfg.Recycle
	if r.MaxRequests <= 0 {
		return 0
	}
	if r.MaxRequestsJitter <= 0 {
		return r.MaxRequests
	}
	jitter := p.cfg.Jitter
	if jitter == nil {
		jitter = func(n int64) int64 { return rand.Int64N(n + 1) }
	}
	return r.MaxRequests + jitter(r.MaxRequestsJitter)
}

// CountsRequests reports whether workers' served calls matter (a recycle
// policy is on), so STATUS shows them.
func (p *Pool) CountsRequests() bool { return p.cfg.Recycle.Enabled() }

type dueWorker struct {
	m      *member
	reason string
	detail string
}

// checkRecycle starts a replacement for every worker due for recycling.
// The replacement loads the same apps on the same devices; the due worker
// keeps serving until the replacement is ready, then retires (see ready).
// At most one worker per app is being recycled at any time, and never
// while a reload replaces that app's workers, so an app always keeps its
// other workers serving.
func (p *Pool) checkRecycle() {
	pol := p.cfg.Recycle
	if !pol.Enabled() {
		return
	}
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()

	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	var live []*member
	for _, m := range p.workers {
		if p.recyclableLocked(m) {
			live = append(live, m)
		}
	}
	p.mu.Unlock()
	if len(live) == 0 {
		return
	}
	sort.Slice(live, func(i, j int) bool { return live[i].p.Age < live[j].p.Age })

	var rss map[int]int64
	if pol.MaxMemory > 0 {
		pids := make([]int, len(live))
		for i, m := range live {
			pids[i] = m.p.PID
		}
		var err error
		if rss, err = p.cfg.TreeMemory(pids); err != nil {
			p.log.Warnf("Cannot measure dirty worker memory: %v", err)
		}
	}

	now := time.Now()
	p.mu.Lock()
	busy := p.appsInTransitionLocked()
	var due []dueWorker
	for _, m := range live {
		if p.workers[m.p.PID] != m || !p.recyclableLocked(m) {
			continue // changed while memory was measured
		}
		reason, detail := p.dueLocked(m, rss, now)
		if reason == "" {
			continue
		}
		clash := false
		for _, a := range m.p.Apps {
			clash = clash || busy[a]
		}
		if clash {
			continue // next check, once the app's current recycle is over
		}
		for _, a := range m.p.Apps {
			busy[a] = true
		}
		m.recycling = reason
		due = append(due, dueWorker{m: m, reason: reason, detail: detail})
	}
	p.mu.Unlock()

	for _, d := range due {
		p.log.Infof("Recycling dirty worker %d (%s): %s; starting its replacement", d.m.p.PID, d.reason, d.detail)
		d.m.p.setRetireReason(d.reason)
		if _, err := p.spawn(d.m.p.Apps, d.m.slot, d.m); err != nil {
			p.log.Errorf("Cannot spawn replacement for dirty worker %d: %v; it keeps serving", d.m.p.PID, err)
			p.mu.Lock()
			d.m.recycling = ""
			p.mu.Unlock()
			d.m.p.setRetireReason("")
		}
	}
}

// recyclableLocked: a serving worker that is not already on its way out
// and is not itself a replacement still booting.
func (p *Pool) recyclableLocked(m *member) bool {
	return !m.retiring && m.replaces == nil && m.recycling == "" && m.p.Booted() && !p.isReplacedLocked(m)
}

// appsInTransitionLocked returns the apps that have a worker being
// recycled (replacement booting, or old worker still finishing its calls)
// or a reload replacement booting.
func (p *Pool) appsInTransitionLocked() map[string]bool {
	busy := map[string]bool{}
	for _, m := range p.workers {
		if m.recycling != "" || m.replaces != nil {
			for _, a := range m.p.Apps {
				busy[a] = true
			}
		}
	}
	return busy
}

// dueLocked returns why m must be recycled now ("" if it need not).
func (p *Pool) dueLocked(m *member, rss map[int]int64, now time.Time) (string, string) {
	pol := p.cfg.Recycle
	served := m.p.use.served.Load()
	if r, ok := rss[m.p.PID]; ok && pol.MaxMemory > 0 && r > pol.MaxMemory {
		if served > 0 {
			return RecycleMemory, fmt.Sprintf("resident memory %s is over max_worker_memory %s", FormatBytes(r), FormatBytes(pol.MaxMemory))
		}
		// Over the bound before serving anything: a fresh replacement
		// would be too, and recycling would only loop.
		if !m.memWarned {
			m.memWarned = true
			p.log.Warnf("Dirty worker %d uses %s after boot, over max_worker_memory %s: not recycled (raise the bound)",
				m.p.PID, FormatBytes(r), FormatBytes(pol.MaxMemory))
		}
	}
	if lim := m.p.use.limit.Load(); lim > 0 && served >= lim {
		return RecycleRequests, fmt.Sprintf("served %d calls (its max_requests: %d)", served, lim)
	}
	if pol.TTL > 0 {
		if age := now.Sub(m.p.Started); age >= pol.TTL {
			return RecycleTTL, fmt.Sprintf("up for %s (worker_ttl %s)", age.Round(time.Millisecond), pol.TTL)
		}
	}
	// Only a worker that served a call can be idle: a fresh one that never
	// got any is not replaced again and again on an idle pool.
	if pol.IdleTTL > 0 && served > 0 && m.p.pending() == 0 {
		idle := now.Sub(time.Unix(0, m.p.use.lastActive.Load()))
		if idle >= pol.IdleTTL {
			return RecycleIdle, fmt.Sprintf("no call for %s (worker_idle_ttl %s)", idle.Round(time.Millisecond), pol.IdleTTL)
		}
	}
	return "", ""
}

// FormatBytes renders a byte count with a binary unit (e.g. "1.5 GiB").
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
