package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count remote calls by node and outcome. A nil *Metrics records
// nothing; they are created only with --metrics-bind.
type Metrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// NewMetrics registers the remote-call metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdirty_remote_calls_total",
			Help: "Calls sent to other cluster nodes, by the node that ran them (empty when none picked it up) and outcome.",
		}, []string{"node", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gdirty_remote_call_seconds",
			Help:    "Duration of calls sent to other cluster nodes, by node and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"node", "outcome"}),
	}
	reg.MustRegister(m.calls, m.latency)
	return m
}

func (m *Metrics) observe(node, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(node, outcome).Inc()
	m.latency.WithLabelValues(node, outcome).Observe(d.Seconds())
}
