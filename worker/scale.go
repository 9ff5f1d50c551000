package worker

// ScaleResult reports what a scaling request did.
type ScaleResult struct {
	Changed int // workers spawned or retired
	Target  int
	Total   int // live workers after the change (retiring ones excluded)
	Reason  string
}

// ScaleUp adds up to n workers; the target grows only by the workers
// actually spawned (none when every app has reached its worker limit), as
// gunicorn's MANAGE add does.
func (p *Pool) ScaleUp(n int) ScaleResult {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	r := ScaleResult{}
	for i := 0; i < n; i++ {
		p.mu.Lock()
		before := p.activeLocked()
		p.target = max(p.target, before) + 1
		p.mu.Unlock()
		why := p.manageLocked()
		p.mu.Lock()
		grew := p.activeLocked() > before
		if !grew {
			p.target--
		}
		p.mu.Unlock()
		if !grew {
			r.Reason = "All apps have reached their worker limits"
			if why != "" {
				r.Reason = why
			}
			break
		}
		r.Changed++
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r.Target, r.Total = p.target, p.activeLocked()
	return r
}

// ScaleDown lowers the target by up to n, never below gunicorn's minimum
// (the largest per-app limit) and never retiring the last worker of an
// app. It retires the oldest removable worker, preferring workers that
// host no limited app.
func (p *Pool) ScaleDown(n int) ScaleResult {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	minimum := minimumWorkers(p.cfg.Apps)
	var retire []*member
	p.mu.Lock()
	r := ScaleResult{}
	for i := 0; i < n; i++ {
		if p.target <= minimum {
			r.Reason = "Cannot decrease below minimum workers required by app specs"
			break
		}
		victim := p.scaleDownVictimLocked(retire)
		if victim == nil {
			r.Reason = "Every remaining worker is the last host of an app"
			break
		}
		p.target--
		retire = append(retire, victim)
	}
	r.Target = p.target
	p.mu.Unlock()
	for _, m := range retire {
		p.retire(m, RetireScaleDown, "scaled down")
	}
	p.mu.Lock()
	r.Changed = len(retire)
	r.Total = p.activeLocked()
	p.mu.Unlock()
	return r
}

// Minimum returns the lowest target ScaleDown accepts.
func (p *Pool) Minimum() int { return minimumWorkers(p.cfg.Apps) }

func (p *Pool) scaleDownVictimLocked(already []*member) *member {
	chosen := map[*member]bool{}
	for _, m := range already {
		chosen[m] = true
	}
	counts := map[string]int{}
	var candidates []*member
	for _, m := range p.workers {
		if m.retiring || chosen[m] || m.replaces != nil {
			continue
		}
		candidates = append(candidates, m)
		for _, a := range m.p.Apps {
			counts[a]++
		}
	}
	limited := map[string]bool{}
	for _, s := range p.cfg.Apps {
		if s.Workers > 0 {
			limited[s.ImportPath] = true
		}
	}
	var best *member
	bestLimited := 0
	for _, m := range candidates {
		strands := false
		nLimited := 0
		for _, a := range m.p.Apps {
			if counts[a] <= 1 {
				strands = true
			}
			if limited[a] {
				nLimited++
			}
		}
		if strands {
			continue
		}
		if best == nil || nLimited < bestLimited || (nLimited == bestLimited && m.p.Age < best.p.Age) {
			best, bestLimited = m, nLimited
		}
	}
	return best
}

// Target returns the number of workers the pool keeps.
func (p *Pool) Target() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}
