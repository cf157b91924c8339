package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/serve"
	"github.com/modelci/modelci/stages/deploy"
)

// startServe runs the model server on a loopback port over real HTTP and returns its address.
func startServe(t *testing.T) string { return startServeBias(t, 3) }

// startServeBias is startServe with the model's bias.
func startServeBias(t *testing.T, bias float64) string {
	t.Helper()
	m := &model.Linear{Schema: model.Schema, Name: "diabetes", Version: "1.0.0", Features: []string{"a", "b"}, Target: "y",
		Mean: []float64{0, 0}, Scale: []float64{1, 1}, Weights: []float64{1, 2}, Bias: bias}
	s, err := serve.New(m, serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// startPrometheus runs Debian's prometheus scraping targets (address → track label) every
// second, and returns its URL.
func startPrometheus(t *testing.T, targets map[string]string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: modelci\n  static_configs:\n")
	for addr, track := range targets {
		fmt.Fprintf(&cfg, "  - targets: [%q]\n    labels: {track: %q}\n", addr, track)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	url := "http://" + addr
	// Ready when every target has been scraped up.
	waitFor(t, 60*time.Second, exited, &logs, func() bool {
		v, err := promScalar(url, `count(up == 1)`)
		return err == nil && v == float64(len(targets))
	})
	return url
}

func waitFor(t *testing.T, limit time.Duration, exited chan error, logs *bytes.Buffer, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v\n%s", err, logs)
		case <-ctx.Done():
			t.Fatalf("prometheus: condition not met within %s\n%s", limit, logs)
		case <-tick.C:
		}
	}
}

func promScalar(url, q string) (float64, error) {
	resp, err := http.Get(url + "/api/v1/query?query=" + strings.ReplaceAll(q, " ", "%20"))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if len(body.Data.Result) == 0 {
		return 0, errors.New("no result")
	}
	var v float64
	_, err = fmt.Sscan(body.Data.Result[0].Value[1].(string), &v)
	return v, err
}

// traffic sends n predictions to addr, every bad-th of them malformed (wrong feature count);
// the first feature goes round 0 to 6, so that predictions spread.
func traffic(t *testing.T, addr string, n, bad int) {
	t.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"instances": [[%d, 2]]}`, i%7)
		if bad > 0 && i%bad == 0 {
			body = `{"instances": [[1, 2, 3]]}`
		}
		resp, err := http.Post("http://"+addr+"/predict", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

func TestPrometheusAnalysis(t *testing.T) {
	stable, good, bad := startServe(t), startServe(t), startServe(t)
	// A model whose answers moved by 5 standard deviations of stable's (the first feature's
	// spread is 2 on this traffic), with healthy errors and latency.
	shifted := startServeBias(t, 13)
	// A canary with thin traffic and many probes: probes are not traffic.
	probed := startServe(t)
	url := startPrometheus(t, map[string]string{stable: "stable", good: "canary-good", bad: "canary-bad", shifted: "canary-shifted", probed: "canary-probed"})

	// A series that appears between two scrapes has no earlier sample, so increase() cannot
	// count its first value (as in production, where errors start long after the first
	// scrape): one request of each kind first, scraped, then the traffic analysed.
	traffic(t, stable, 1, 0)
	traffic(t, good, 1, 0)
	traffic(t, bad, 1, 1)
	traffic(t, shifted, 1, 0)
	traffic(t, probed, 1, 0)
	waitFor(t, 60*time.Second, nil, &bytes.Buffer{}, func() bool {
		v, err := promScalar(url, `count(modelci_http_requests_total{route="/predict"})`)
		return err == nil && v == 6 // 200 on each target, 400 on the bad one
	})
	const n = 400
	traffic(t, stable, n, 0)
	traffic(t, good, n, 0)
	traffic(t, bad, n, 4) // a quarter of the canary's requests fail
	traffic(t, shifted, n, 0)
	traffic(t, probed, 5, 0)
	for range 20 * n {
		resp, err := http.Get("http://" + probed + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// Scraped when the counters show every request.
	waitFor(t, 60*time.Second, nil, &bytes.Buffer{}, func() bool {
		p, err := promScalar(url, `sum(modelci_http_requests_total{route="/predict"})`)
		r, err2 := promScalar(url, `sum(modelci_http_requests_total{route="/readyz"})`)
		return err == nil && err2 == nil && p >= 4*n+10 && r >= 20*n
	})

	analysis := func(canary string) *deploy.Prometheus {
		return deploy.NewPrometheus(deploy.AnalysisConfig{
			Prometheus:         deploy.PrometheusConfig{URL: url, CanarySelector: `track="` + canary + `"`, StableSelector: `track="stable"`, Window: "1m"},
			MaxErrorRate:       0.05,
			MaxLatencyP99Ms:    1000,
			MaxPredictionShift: 0.25,
		})
	}
	step := deploy.Step{Namespace: "models", App: "diabetes", Role: "predict", Stable: "diabetes", Canary: "diabetes-canary", Percent: 10}
	ctx := context.Background()
	if err := analysis("canary-good").Analyze(ctx, step); err != nil {
		t.Errorf("healthy canary: %v", err)
	}
	err := analysis("canary-bad").Analyze(ctx, step)
	if !errors.Is(err, deploy.ErrAnalysisFailed) || !strings.Contains(err.Error(), "canary.error_rate") {
		t.Errorf("failing canary: %v; want ErrAnalysisFailed naming the error rate check", err)
	}
	err = analysis("canary-probed").Analyze(ctx, step)
	if !errors.Is(err, deploy.ErrAnalysisFailed) || !strings.Contains(err.Error(), "canary.error_rate INCONCLUSIVE") {
		t.Errorf("canary with 5 requests and %d probes: %v; want ErrAnalysisFailed, the error rate INCONCLUSIVE", 20*n, err)
	}
	err = analysis("canary-shifted").Analyze(ctx, step)
	if !errors.Is(err, deploy.ErrAnalysisFailed) || !strings.Contains(err.Error(), "canary.prediction_shift FAIL") || strings.Contains(err.Error(), "canary.error_rate") {
		t.Errorf("canary whose predictions moved: %v; want ErrAnalysisFailed naming the prediction shift alone", err)
	}
	if err := analysis("absent").Analyze(ctx, step); !errors.Is(err, deploy.ErrAnalysisFailed) {
		t.Errorf("canary without traffic: %v; want ErrAnalysisFailed (no data)", err)
	}
}
