package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/worker"
)

// metricsEndpoint serves /metrics for Prometheus on addr (off unless
// --metrics-bind is given). It returns a stop function.
func metricsEndpoint(addr string, reg *prometheus.Registry, log logrus.FieldLogger) (func(), error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--metrics-bind %s: %v", addr, err)}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Errorf("Metrics endpoint stopped: %v", err)
		}
	}()
	log.Infof("Prometheus metrics on http://%s/metrics", l.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// newMetrics builds gdirty's metrics and their endpoint when addr is set;
// srv and pool are read at scrape time (they are created afterwards).
func newMetrics(addr string, apps []string, srv **arbiter.Server, pool **worker.Pool, stash arbiter.StashStats, log logrus.FieldLogger) (*arbiter.Metrics, prometheus.Registerer, func(), error) {
	if addr == "" {
		return nil, nil, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	m := arbiter.NewMetrics(reg, apps,
		func() float64 {
			if s := *srv; s != nil {
				return float64(s.Queued())
			}
			return 0
		},
		func() float64 {
			if p := *pool; p != nil {
				return float64(len(p.Workers()))
			}
			return 0
		})
	if stash != nil {
		arbiter.AddStash(reg, stash)
	}
	stop, err := metricsEndpoint(addr, reg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, reg, stop, nil
}
