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
	// The predictions' moments, for comparing the distribution of one version's predictions
	// with another's on the same traffic (the canary analysis's model-quality check). Each
	// is a counter, so that increase() over a window is right across restarts: the sum is
	// kept as its positive and negative parts, the negative one as a magnitude.
	MetricPredictionSumPositive = "modelci_prediction_sum_positive_total"
	MetricPredictionSumNegative = "modelci_prediction_sum_negative_total"
	MetricPredictionSquares     = "modelci_prediction_squares_total"
	MetricModelInfo             = "modelci_model_info"
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
	// The predictions' moments: see MetricPredictionSumPositive.
	sumPositive, sumNegative, squares prometheus.Counter
	// Resolved once per route template: WithLabelValues allocates on every call.
	routes [numRoutes]routeStats
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
		sumPositive: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricPredictionSumPositive,
			Help: "Sum of the positive predictions.",
		}),
		sumNegative: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricPredictionSumNegative,
			Help: "Sum of the magnitudes of the negative predictions.",
		}),
		squares: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricPredictionSquares,
			Help: "Sum of the squared predictions.",
		}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricModelInfo,
		Help: "The served model; always 1.",
	}, []string{"name", "version"})
	for _, c := range []prometheus.Collector{met.requests, met.duration, met.predictions, met.sumPositive, met.sumNegative, met.squares, info} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register server metrics: %w", err)
		}
	}
	if name != "" {
		info.WithLabelValues(name, version).Set(1)
	}
	// Every route the role serves gets its series up front (a route's
	// latency histogram and its 200 counter), so that dashboards see
	// them at zero.
	for r := range numRoutes {
		if r.predicts() && !role.predicts() || r == routeProcess && !role.preprocesses() {
			continue
		}
		met.routes[r].duration = met.duration.WithLabelValues(routeLabels[r])
		if r != routeOther {
			met.routes[r].ok = met.requests.WithLabelValues(routeLabels[r], "200")
		}
	}
	return met, nil
}

func (m *metrics) observe(r route, code int, d time.Duration) {
	rm := &m.routes[r]
	if code == http.StatusOK && rm.ok != nil {
		rm.ok.Inc()
	} else {
		m.requests.WithLabelValues(routeLabels[r], strconv.Itoa(code)).Inc()
	}
	if rm.duration == nil {
		rm = &m.routes[routeOther]
	}
	rm.duration.Observe(d.Seconds())
}

// predicted counts one request's predictions and adds them to the moments, once per request:
// each Add is an atomic compare-and-swap loop, too dear per row.
func (m *metrics) predicted(y []float64) {
	var pos, neg, sq float64
	for _, v := range y {
		if v >= 0 {
			pos += v
		} else {
			neg -= v
		}
		sq += v * v
	}
	m.predictions.Add(float64(len(y)))
	// A counter refuses a non-finite increase; predictRows answers 422 before one gets here.
	m.sumPositive.Add(pos)
	m.sumNegative.Add(neg)
	m.squares.Add(sq)
}

func metricsHandler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
}
