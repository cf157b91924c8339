package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/modelci/modelci/modelgate"
)

// Step describes one canary step to an Analysis.
type Step struct {
	Namespace string
	App       string
	Role      string
	// Stable and Canary are the Deployments' names.
	Stable, Canary string
	Percent        int
	CanaryReplicas int32
	StableReplicas int32
	Release        Release
}

// Analysis decides whether a canary may go on to its next step. It returns nil to go on, and
// an error wrapping ErrAnalysisFailed to abort; any other error also aborts.
type Analysis interface {
	Analyze(ctx context.Context, s Step) error
}

// AnalysisFunc adapts a function to Analysis.
type AnalysisFunc func(ctx context.Context, s Step) error

// Analyze calls f.
func (f AnalysisFunc) Analyze(ctx context.Context, s Step) error { return f(ctx, s) }

// PodsReady is the default analysis: every canary pod is Ready and no container has
// restarted, with at least the step's canary replicas.
type PodsReady struct {
	Client kubernetes.Interface
}

// Analyze lists the canary's pods.
func (a PodsReady) Analyze(ctx context.Context, s Step) error {
	sel := labels.SelectorFromSet(map[string]string{LabelName: s.App, LabelComponent: s.Role, LabelTrack: TrackCanary})
	pods, err := a.Client.CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("canary pods of %s: %w", s.Canary, classify(err))
	}
	ready := int32(0)
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount > 0 {
				return fmt.Errorf("canary %s at %d%%: pod %s container %s restarted %d times: %w", s.Canary, s.Percent, p.Name, cs.Name, cs.RestartCount, ErrAnalysisFailed)
			}
		}
		if podReady(p) {
			ready++
		}
	}
	if ready < s.CanaryReplicas {
		return fmt.Errorf("canary %s at %d%%: %d of %d pods ready: %w", s.Canary, s.Percent, ready, s.CanaryReplicas, ErrAnalysisFailed)
	}
	return nil
}

// Metric names `modelci serve` exports (serve.MetricRequests, serve.MetricDuration).
const (
	metricRequests = "modelci_http_requests_total"
	metricDuration = "modelci_http_request_duration_seconds"
	// serve.MetricPredictions and the prediction moments.
	metricPredictions     = "modelci_predictions_total"
	metricPredSumPositive = "modelci_prediction_sum_positive_total"
	metricPredSumNegative = "modelci_prediction_sum_negative_total"
	metricPredSquares     = "modelci_prediction_squares_total"
)

// trafficRoutes selects the requests of users: not the kubelet's probes, Prometheus's
// scrapes or load balancers' pings, which would dilute a canary's error rate and latency
// (serve's route labels; PromQL regexes are anchored).
const trafficRoutes = `route!~"/healthz|/readyz|/metrics|/ping|/v2/health/.*|.*/ready"`

// Prometheus analyses a canary step from live traffic with modelgate's canary checks: the
// canary's error rate, p99 latency and mean prediction against the policy's ceilings and against stable, over
// Window, read from Prometheus's HTTP API. Anything but PASS aborts: no one is there to
// approve an INCONCLUSIVE step in the middle of a rollout.
type Prometheus struct {
	URL string
	// CanarySelector and StableSelector are PromQL label matchers (without braces), such
	// as `track="canary"`.
	CanarySelector, StableSelector string
	// Window is the PromQL range of the rate queries (default 1m).
	Window string
	Policy modelgate.CanaryPolicy
	Client *http.Client
}

// NewPrometheus builds the Prometheus analysis of cfg.
func NewPrometheus(cfg AnalysisConfig) *Prometheus {
	p := &Prometheus{
		URL:            cfg.Prometheus.URL,
		CanarySelector: cfg.Prometheus.CanarySelector,
		StableSelector: cfg.Prometheus.StableSelector,
		Window:         cfg.Prometheus.Window,
		Policy:         modelgate.CanaryPolicy{MaxErrorRate: cfg.MaxErrorRate, MaxLatencyP99Ms: cfg.MaxLatencyP99Ms, MaxPredictionShift: cfg.MaxPredictionShift, OnInconclusive: modelgate.FailOn},
	}
	if p.CanarySelector == "" {
		p.CanarySelector = `track="canary"`
	}
	if p.StableSelector == "" {
		p.StableSelector = `track="stable"`
	}
	return p
}

// Analyze queries both versions' traffic and decides with modelgate.AnalyzeCanary.
func (p *Prometheus) Analyze(ctx context.Context, s Step) error {
	canary, err := p.traffic(ctx, p.CanarySelector)
	if err != nil {
		return err
	}
	stable, err := p.traffic(ctx, p.StableSelector)
	if err != nil {
		return err
	}
	rep, err := modelgate.AnalyzeCanary(p.Policy, modelgate.CanaryData{Canary: canary, Stable: stable})
	if err != nil {
		return fmt.Errorf("canary %s at %d%%: %w: %w", s.Canary, s.Percent, ErrAnalysisFailed, err)
	}
	if rep.Verdict != modelgate.Pass {
		var why []string
		for _, c := range rep.Checks {
			if c.Verdict != modelgate.Pass {
				why = append(why, fmt.Sprintf("%s %s: %s", c.Name, c.Verdict, c.Reason))
			}
		}
		return fmt.Errorf("canary %s at %d%%: %s: %w", s.Canary, s.Percent, strings.Join(why, "; "), ErrAnalysisFailed)
	}
	return nil
}

func (p *Prometheus) traffic(ctx context.Context, sel string) (modelgate.Traffic, error) {
	w := p.Window
	if w == "" {
		w = "1m"
	}
	var t modelgate.Traffic
	req, err := p.query(ctx, fmt.Sprintf(`sum(increase(%s{%s,%s}[%s]))`, metricRequests, sel, trafficRoutes, w))
	if err != nil {
		return t, err
	}
	// Any answer but 2xx is an error: a release that refuses requests the previous one
	// served (4xx) is as broken as one that fails them (5xx).
	errs, err := p.query(ctx, fmt.Sprintf(`sum(increase(%s{%s,%s,code!~"2.."}[%s]))`, metricRequests, sel, trafficRoutes, w))
	if err != nil {
		return t, err
	}
	if len(req) > 0 {
		t.Requests = req[0].value
	}
	if len(errs) > 0 {
		t.Errors = errs[0].value
	}
	buckets, err := p.query(ctx, fmt.Sprintf(`sum by (le) (increase(%s_bucket{%s,%s}[%s]))`, metricDuration, sel, trafficRoutes, w))
	if err != nil {
		return t, err
	}
	for _, b := range buckets {
		le, err := strconv.ParseFloat(b.labels["le"], 64)
		if err != nil {
			return t, fmt.Errorf("prometheus %s: bucket le=%q: %w", p.URL, b.labels["le"], err)
		}
		t.Latency = append(t.Latency, modelgate.Bucket{UpperBound: le, Count: b.value})
	}
	if p.Policy.MaxPredictionShift == 0 {
		return t, nil
	}
	var pos, neg float64
	for _, m := range []struct {
		name string
		v    *float64
	}{{metricPredictions, &t.Predictions.Count}, {metricPredSumPositive, &pos}, {metricPredSumNegative, &neg}, {metricPredSquares, &t.Predictions.SumSquares}} {
		r, err := p.query(ctx, fmt.Sprintf(`sum(increase(%s{%s}[%s]))`, m.name, sel, w))
		if err != nil {
			return t, err
		}
		if len(r) > 0 {
			*m.v = r[0].value
		}
	}
	t.Predictions.Sum = pos - neg
	return t, nil
}

type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant PromQL query and returns its vector.
func (p *Prometheus) query(ctx context.Context, q string) ([]sample, error) {
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	u := strings.TrimRight(p.URL, "/") + "/api/v1/query?" + url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", p.URL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", p.URL, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus %s: query %s: %s: %w", p.URL, q, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus %s: query %s: %s %s", p.URL, q, resp.Status, body.Error)
	}
	var out []sample
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		out = append(out, sample{labels: r.Metric, value: v})
	}
	return out, nil
}
