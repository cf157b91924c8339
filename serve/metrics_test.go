package serve_test

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/serve"
)

// scrape fetches /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: code %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string)
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// requestCounts returns the non-zero request counters as "route code" → count.
func requestCounts(t *testing.T, mfs map[string]*dto.MetricFamily) map[string]float64 {
	t.Helper()
	mf, ok := mfs[serve.MetricRequests]
	if !ok {
		t.Fatalf("no %s", serve.MetricRequests)
	}
	got := make(map[string]float64)
	for _, m := range mf.GetMetric() {
		if v := m.GetCounter().GetValue(); v != 0 {
			l := labels(m)
			got[l["route"]+" "+l["code"]] = v
		}
	}
	return got
}

// checkMetrics compares every request counter, the histogram counts per
// route, the prediction count and the model info with what was sent.
func checkMetrics(t *testing.T, mfs map[string]*dto.MetricFamily, wantRequests map[string]float64, wantPredictions float64) {
	t.Helper()
	if got := requestCounts(t, mfs); !maps.Equal(got, wantRequests) {
		t.Errorf("request counters:\n got %v\nwant %v", got, wantRequests)
	}
	perRoute := make(map[string]uint64)
	for k, v := range wantRequests {
		perRoute[strings.Fields(k)[0]] += uint64(v)
	}
	for _, m := range mfs[serve.MetricDuration].GetMetric() {
		route := labels(m)["route"]
		if got := m.GetHistogram().GetSampleCount(); got != perRoute[route] {
			t.Errorf("latency histogram of %s counts %d requests, want %d", route, got, perRoute[route])
		}
	}
	if got := mfs[serve.MetricPredictions].GetMetric()[0].GetCounter().GetValue(); got != wantPredictions {
		t.Errorf("%s = %v, want %v", serve.MetricPredictions, got, wantPredictions)
	}
	info := mfs[serve.MetricModelInfo].GetMetric()
	if len(info) != 1 || info[0].GetGauge().GetValue() != 1 ||
		!maps.Equal(labels(info[0]), map[string]string{"name": "diabetes", "version": "1.2.3"}) {
		t.Errorf("%s = %v, want one series {name=diabetes, version=1.2.3} 1", serve.MetricModelInfo, info)
	}
}

func TestMetrics(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	row := mustJSON(t, rows[0])
	sent := []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/predict", `{"instances": [` + row + `]}`, 200},
		{"POST", "/predict", `{"instances": [` + row + `,` + row + `]}`, 200},
		{"POST", "/predict", `{"input": [` + strings.Repeat(row+",", 31) + row + `]}`, 200},
		{"POST", "/predict", `{"instances": [`, 400},
		{"POST", "/predict", `{"instances": [[1]]}`, 400},
		{"GET", "/predict", "", 405},
		{"POST", "/process_data", `{"input": ` + row + `}`, 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/nowhere", "", 404},
	}
	want := make(map[string]float64)
	for _, s := range sent {
		if r := do(t, s.method, url+s.path, "application/json", strings.NewReader(s.body)); r.code != s.code {
			t.Fatalf("%s %s: code %d, want %d", s.method, s.path, r.code, s.code)
		}
		route := s.path
		if route == "/nowhere" {
			route = "other"
		}
		want[fmt.Sprintf("%s %d", route, s.code)]++
	}
	checkMetrics(t, scrape(t, url), want, 1+2+32)

	// The first scrape is counted once it is done.
	want["/metrics 200"] = 1
	if got := requestCounts(t, scrape(t, url)); !maps.Equal(got, want) {
		t.Errorf("after one scrape:\n got %v\nwant %v", got, want)
	}
}

func TestDefaultRegistryHasRuntimeMetrics(t *testing.T) {
	s, err := serve.New(testModel(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, s)
	mfs := scrape(t, ts)
	for _, name := range []string{"go_goroutines", serve.MetricModelInfo} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("no %s in the default registry", name)
		}
	}
}

// Many clients at once, under -race in CI: every answer right, every request counted.
func TestConcurrentClients(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	const clients, perClient = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				n := 1 + (c+i)%len(rows)
				body := mustJSON(t, map[string]any{"instances": rows[:n]})
				resp, err := http.Post(url+"/predict", "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err
					continue
				}
				var got struct{ Predictions []float64 }
				err = decodeBody(resp, &got)
				if err != nil {
					errs <- err
					continue
				}
				if want := predictions(m, rows[:n]); !slices.Equal(got.Predictions, want) {
					errs <- fmt.Errorf("client %d request %d: predictions %v, want %v", c, i, got.Predictions, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var rowsSent float64
	for c := range clients {
		for i := range perClient {
			rowsSent += float64(1 + (c+i)%len(rows))
		}
	}
	checkMetrics(t, scrape(t, url), map[string]float64{"/predict 200": clients * perClient}, rowsSent)
}

// TestPredictionMoments: the predictions' count, positive and negative sums and squares, as
// counters, are what the answers held, whichever protocol asked, for positive and negative
// predictions alike: the canary analysis compares versions by them.
func TestPredictionMoments(t *testing.T) {
	m := testModel(t)
	low := *m
	low.Bias = -1e4 // every prediction negative
	for _, m := range []*model.Linear{m, &low} {
		_, url := start(t, m)
		var n, pos, neg, sq float64
		add := func(x []float64) {
			y := m.Predict(x)
			n++
			if y >= 0 {
				pos += y
			} else {
				neg -= y
			}
			sq += y * y
		}
		for _, r := range rows {
			body := `{"instances": [` + mustJSON(t, r) + `]}`
			if got := do(t, "POST", url+"/predict", "application/json", strings.NewReader(body)); got.code != 200 {
				t.Fatalf("/predict: code %d", got.code)
			}
			add(r)
			if got := do(t, "POST", url+"/v1/models/diabetes:predict", "application/json", strings.NewReader(body)); got.code != 200 {
				t.Fatalf("/v1/models/diabetes:predict: code %d", got.code)
			}
			add(r)
		}
		mfs := scrape(t, url)
		for name, want := range map[string]float64{
			serve.MetricPredictions:           n,
			serve.MetricPredictionSumPositive: pos,
			serve.MetricPredictionSumNegative: neg,
			serve.MetricPredictionSquares:     sq,
		} {
			mf, ok := mfs[name]
			if !ok {
				t.Fatalf("bias %v: no %s", m.Bias, name)
			}
			if got := mf.GetMetric()[0].GetCounter().GetValue(); math.Abs(got-want) > 1e-9*math.Abs(want) {
				t.Errorf("bias %v: %s = %v; want %v", m.Bias, name, got, want)
			}
		}
	}
}
