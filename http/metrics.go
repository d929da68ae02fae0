package http

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/melonsync/melonsync/server"
)

// Metrics are the server's Prometheus metrics, registered on a registry of the
// caller's choosing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	records  *prometheus.CounterVec
	events   prometheus.Gauge
	registry *prometheus.Registry
}

// NewMetrics creates the metrics and registers them on reg (a new registry with the
// Go and process collectors when reg is nil).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "melonsync_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "melonsync_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "melonsync_records_total", Help: "Records pushed (by kind: created, updated, deleted, rejected) and conflicts.",
		}, []string{"kind"}),
		events: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "melonsync_event_streams", Help: "Open live-update streams.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.records, m.events)
	return m
}

// WatchGroups publishes a store's group-commit counters, read from stats at each scrape.
func (m *Metrics) WatchGroups(stats func() server.GroupStats) {
	counter := func(name, help string, f func(server.GroupStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(stats())) })
	}
	m.registry.MustRegister(
		counter("melonsync_group_commits_total", "Group transactions run, each for two pushes or more.",
			func(c server.GroupStats) int64 { return c.Groups }),
		counter("melonsync_group_commit_pushes_total", "Pushes committed in a group transaction.",
			func(c server.GroupStats) int64 { return c.Grouped }),
		counter("melonsync_group_commit_sent_alone_total", "Pushes a group sent to run alone (an overlap with another member, a race, a lock wait).",
			func(c server.GroupStats) int64 { return c.Alone }),
		counter("melonsync_group_commit_single_total", "Pushes that found no other one waiting and ran as a plain transaction.",
			func(c server.GroupStats) int64 { return c.Single }),
	)
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func (m *Metrics) observe(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) count(kind string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.records.WithLabelValues(kind).Add(float64(n))
}

func (m *Metrics) streams(delta float64) {
	if m != nil {
		m.events.Add(delta)
	}
}

// route names a request's path for metrics without unbounded label values.
func route(path string) string {
	switch path {
	case "/api/sync/pull", "/api/sync/push", "/sync", "/api/sync/events", "/healthz":
		return path
	}
	return "other"
}
