package serve

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, stable: dashboards and the canary analysis of deploy query them.
const (
	MetricRequests    = "modelci_http_requests_total"
	MetricDuration    = "modelci_http_request_duration_seconds"
	MetricPredictions = "modelci_predictions_total"
	MetricModelInfo   = "modelci_model_info"
)

// latencyBuckets spans the 20µs handler time to multi-second stalls, with
// resolution around the 1–10 ms p99 objectives.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	predictions prometheus.Counter
	// Resolved once: WithLabelValues allocates on every call.
	routes map[string]*routeStats
}

type routeStats struct {
	ok       prometheus.Counter // code 200, the hot one
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, name, version string, role Role) (*metrics, error) {
	met := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricDuration,
			Help:    "HTTP request handling time by route.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		predictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricPredictions,
			Help: "Rows predicted.",
		}),
		routes: make(map[string]*routeStats),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricModelInfo,
		Help: "The served model; always 1.",
	}, []string{"name", "version"})
	for _, c := range []prometheus.Collector{met.requests, met.duration, met.predictions, info} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register server metrics: %w", err)
		}
	}
	if name != "" {
		info.WithLabelValues(name, version).Set(1)
	}
	routes := []string{routeHealthz, routeReadyz, routeMetrics, routeOther}
	if role.predicts() {
		routes = append(routes, routePredict)
	}
	if role.preprocesses() {
		routes = append(routes, routeProcess)
	}
	for _, r := range routes {
		rs := &routeStats{duration: met.duration.WithLabelValues(r)}
		if r != routeOther {
			rs.ok = met.requests.WithLabelValues(r, "200")
		}
		met.routes[r] = rs
	}
	return met, nil
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	rm := m.routes[route]
	if code == http.StatusOK && rm.ok != nil {
		rm.ok.Inc()
	} else {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
	rm.duration.Observe(d.Seconds())
}

func metricsHandler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
}
