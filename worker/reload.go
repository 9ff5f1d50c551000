package worker

import (
	"slices"
	"sort"
)

// Recycle replaces a worker that holds a call past dirty_timeout: a
// replacement with the same apps starts at once and the stuck worker is
// retired, so no later call is routed to it.
func (p *Pool) Recycle(w *Process, reason string) {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	p.mu.Lock()
	m := p.workers[w.PID]
	if m == nil || m.retiring || p.stopping {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	// Replacement first, so the app never lacks a host in between.
	if _, err := p.spawn(w.Apps, m.slot, nil); err != nil {
		p.log.Errorf("Cannot spawn replacement for dirty worker %d: %v", w.PID, err)
		p.mu.Lock()
		p.respawns = append(p.respawns, respawn{apps: w.Apps, slot: m.slot})
		p.mu.Unlock()
		defer p.poke()
	}
	p.retire(m, RetireTimeout, reason)
}

// Reload replaces every worker: each gets a replacement with the same apps,
// and retires only once that replacement is ready, so the pool never lacks
// a worker for any app during the reload.
func (p *Pool) Reload() {
	if r, ok := p.cfg.Spawner.(interface{ Refresh() error }); ok {
		// First, so that replacements (and any crash respawn from now on)
		// run the apps' current code.
		if err := r.Refresh(); err != nil {
			p.log.Errorf("Reload: cannot restart the fork server (%v); replacements reuse the running one", err)
		}
	}
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	// A recycle replacement still booting was forked before the refresh
	// and would run the old code: it is dropped, and the worker it was to
	// replace is reloaded like the others (it still retires for its
	// recycle reason once the new replacement is ready).
	var stale []*member
	for _, m := range p.workers {
		if !m.retiring && m.replaces != nil && m.replaces.recycling != "" {
			m.replaces = nil
			stale = append(stale, m)
		}
	}
	var olds []*member
	for _, m := range p.workers {
		if !m.retiring && m.replaces == nil && !p.isReplacedLocked(m) && !slices.Contains(stale, m) {
			olds = append(olds, m)
		}
	}
	p.mu.Unlock()
	for _, m := range stale {
		p.retire(m, RetireReload, "recycle replacement superseded by reload")
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].p.Age < olds[j].p.Age })
	p.log.Infof("Reloading %d dirty workers", len(olds))
	for _, old := range olds {
		p.mu.Lock()
		alive := p.workers[old.p.PID] == old && !old.retiring && !p.stopping
		p.mu.Unlock()
		if !alive {
			continue // died meanwhile: the crash path replaces it
		}
		if _, err := p.spawn(old.p.Apps, old.slot, old); err != nil {
			p.log.Errorf("Reload: cannot spawn replacement for worker %d: %v", old.p.PID, err)
		}
	}
	// Whatever raced with the reload, the pool converges to its target.
	p.poke()
}

func (p *Pool) isReplacedLocked(m *member) bool {
	for _, o := range p.workers {
		if o.replaces == m {
			return true
		}
	}
	return false
}
