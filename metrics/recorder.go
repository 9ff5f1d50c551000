// Package metrics is gdirty's Prometheus side: the recorder the arbiter
// reports calls and worker lifecycle to, the stash gauges and the
// /metrics endpoint. Only the full gdirty build links it (client_golang
// and net/http cost the lean build's idle memory); the arbiter sees it
// through arbiter.Recorder.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/worker"
)

// maxActionsPerApp bounds the "action" label: action names come from
// clients, and an unbounded label set is a memory leak.
const maxActionsPerApp = 64

// Recorder implements arbiter.Recorder with Prometheus metrics.
type Recorder struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	starts    prometheus.Counter
	deaths    prometheus.Counter
	timeouts  prometheus.Counter
	recycles  *prometheus.CounterVec
	mu        sync.Mutex
	actions   map[string]map[string]bool
	knownApps map[string]bool
}

var _ arbiter.Recorder = (*Recorder)(nil)

// AddStash registers the stash gauges (read at scrape time).
func AddStash(reg prometheus.Registerer, s arbiter.StashStats) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gdirty_stash_tables", Help: "Stash tables."},
			func() float64 { t, _ := s.Stats(); return float64(t) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gdirty_stash_entries", Help: "Stash entries across all tables."},
			func() float64 { _, e := s.Stats(); return float64(e) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gdirty_stash_bytes", Help: "Stash memory accounted against --stash-max-bytes."},
			func() float64 { u, _ := s.Usage(); return float64(u) }),
	)
}

// NewRecorder registers gdirty's metrics on reg. queueDepth and workers
// are read at scrape time.
func NewRecorder(reg prometheus.Registerer, apps []string, queueDepth, workers func() float64) *Recorder {
	m := &Recorder{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdirty_requests_total", Help: "Dirty calls by app, action and outcome.",
		}, []string{"app", "action", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gdirty_request_duration_seconds",
			Help:    "Time from a call's arrival to its final answer, by app.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"app"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gdirty_requests_in_flight", Help: "Calls being answered now."}),
		starts:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gdirty_worker_starts_total", Help: "Dirty worker processes started."}),
		deaths:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gdirty_worker_exits_total", Help: "Dirty worker processes that exited (any reason)."}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "gdirty_call_timeouts_total", Help: "Calls that hit dirty_timeout."}),
		recycles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gdirty_worker_retirements_total",
			Help: "Workers retired, by reason: reload, scale_down, excess, timeout (stuck call), max_requests, max_memory, ttl, idle_ttl."},
			[]string{"reason"}),
		actions:   map[string]map[string]bool{},
		knownApps: map[string]bool{},
	}
	for _, a := range apps {
		m.knownApps[a] = true
	}
	// Every reason exported from the start (at 0), so rates work at once.
	for _, r := range worker.RetireReasons {
		m.recycles.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.latency, m.inFlight, m.starts, m.deaths, m.timeouts, m.recycles,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gdirty_queue_depth", Help: "Calls waiting for a free worker."}, queueDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gdirty_workers", Help: "Live dirty worker processes."}, workers),
	)
	return m
}

// label bounds app and action to values that cannot grow without limit.
func (m *Recorder) label(app, action string) (string, string) {
	if !m.knownApps[app] {
		return "(unknown)", "(unknown)"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.actions[app]
	if seen == nil {
		seen = map[string]bool{}
		m.actions[app] = seen
	}
	if !seen[action] {
		if len(seen) >= maxActionsPerApp || len(action) > 64 {
			return app, "(other)"
		}
		seen[action] = true
	}
	return app, action
}

// CallStarted counts a call in flight and returns its start time.
func (m *Recorder) CallStarted() time.Time {
	m.inFlight.Inc()
	return time.Now()
}

// CallFinished records a call's outcome and latency.
func (m *Recorder) CallFinished(app, action, outcome string, started time.Time) {
	m.inFlight.Dec()
	app, action = m.label(app, action)
	m.requests.WithLabelValues(app, action, outcome).Inc()
	m.latency.WithLabelValues(app).Observe(time.Since(started).Seconds())
	if outcome == arbiter.OutcomeTimeout {
		m.timeouts.Inc()
	}
}

// WorkerStarted, WorkerExited and WorkerRetired count lifecycle events.
func (m *Recorder) WorkerStarted() { m.starts.Inc() }

func (m *Recorder) WorkerExited() { m.deaths.Inc() }

// WorkerRetired counts a retirement; reason is one of worker.RetireReasons.
func (m *Recorder) WorkerRetired(reason string) { m.recycles.WithLabelValues(reason).Inc() }
