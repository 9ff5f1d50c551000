package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gdirty/gdirty/arbiter"
)

func newTestRecorder(t *testing.T) (*Recorder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	zero := func() float64 { return 0 }
	return NewRecorder(reg, []string{"app:A"}, zero, zero), reg
}

func TestLabelsStayBounded(t *testing.T) {
	tests := []struct {
		name, app, action string
		wantApp, wantAct  string
	}{
		{"known app and action", "app:A", "run", "app:A", "run"},
		{"unknown app", "app:Nope", "run", "(unknown)", "(unknown)"},
		{"action name too long", "app:A", strings.Repeat("x", 65), "app:A", "(other)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestRecorder(t)
			m.CallFinished(tc.app, tc.action, arbiter.OutcomeOK, m.CallStarted())
			if got := testutil.ToFloat64(m.requests.WithLabelValues(tc.wantApp, tc.wantAct, arbiter.OutcomeOK)); got != 1 {
				t.Fatalf("requests{%s,%s} = %v, want 1", tc.wantApp, tc.wantAct, got)
			}
			if got := testutil.ToFloat64(m.inFlight); got != 0 {
				t.Fatalf("in flight after the call = %v, want 0", got)
			}
		})
	}
}

func TestActionsBeyondTheBoundAreOther(t *testing.T) {
	m, _ := newTestRecorder(t)
	for i := 0; i < maxActionsPerApp+10; i++ {
		m.CallFinished("app:A", fmt.Sprintf("a%d", i), arbiter.OutcomeOK, time.Now())
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("app:A", "(other)", arbiter.OutcomeOK)); got != 10 {
		t.Fatalf("(other) = %v, want 10", got)
	}
	if got := testutil.CollectAndCount(m.requests); got != maxActionsPerApp+1 {
		t.Fatalf("series = %d, want %d", got, maxActionsPerApp+1)
	}
}

func TestTimeoutsAndLifecycle(t *testing.T) {
	m, _ := newTestRecorder(t)
	m.CallFinished("app:A", "run", arbiter.OutcomeTimeout, m.CallStarted())
	m.WorkerStarted()
	m.WorkerStarted()
	m.WorkerExited()
	m.WorkerRetired("ttl")
	for name, tc := range map[string]struct {
		c    prometheus.Collector
		want float64
	}{
		"timeouts": {m.timeouts, 1},
		"starts":   {m.starts, 2},
		"exits":    {m.deaths, 1},
		"ttl":      {m.recycles.WithLabelValues("ttl"), 1},
		"reload":   {m.recycles.WithLabelValues("reload"), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s = %v, want %v", name, got, tc.want)
		}
	}
}
