package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/deploy"
)

// startNodePrometheus runs Debian's prometheus scraping the pods of ns every second by pod IP,
// each series labelled with its pod's track (stable or canary), as deploy's default selectors
// expect, and its pod's name. Debian builds prometheus without Kubernetes discovery, so the
// test discovers: it watches the pods and writes them to a file_sd file, which prometheus
// reads on change. It returns the URL once want pods are scraped.
func startNodePrometheus(t *testing.T, n *k8stest.Node, ns string, want int) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.json")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	watchPodTargets(ctx, t, n.Client, ns, targets)
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: models
  file_sd_configs:
  - {files: [%q], refresh_interval: 1s}
`, targets)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
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
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("prometheus (%v):\n%s", waitErr, logs.String())
		}
	})
	u := "http://" + addr
	promWait(t, u, exited, fmt.Sprintf("count(up == 1) >= %d", want))
	return u
}

// watchPodTargets keeps file, a prometheus file_sd file, listing ns's pods that have an IP
// (PORT on it) with their track and name, until ctx ends. It returns once the file is written.
func watchPodTargets(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, file string) {
	t.Helper()
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	pods := map[string]group{}
	write := func() error {
		groups := make([]group, 0, len(pods))
		for _, g := range pods {
			groups = append(groups, g)
		}
		b, err := json.Marshal(groups)
		if err != nil {
			return err
		}
		// Whole or not at all: prometheus may read it at any moment.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, file)
	}
	update := func(p *corev1.Pod, deleted bool) {
		if deleted || p.Status.PodIP == "" || p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodRunning {
			delete(pods, p.Name)
			return
		}
		pods[p.Name] = group{
			Targets: []string{net.JoinHostPort(p.Status.PodIP, strconv.Itoa(deploy.Port))},
			Labels:  map[string]string{"track": p.Labels[deploy.LabelTrack], "pod": p.Name},
		}
	}
	list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		update(&list.Items[i], false)
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			update(p, ev.Type == watch.Deleted)
			if err := write(); err != nil {
				t.Errorf("prometheus targets: %v", err)
				return
			}
		}
	}()
}

// promWait polls Prometheus until query returns a non-empty vector (a comparison that holds),
// failing t after two minutes or once exited is closed.
func promWait(t *testing.T, u string, exited chan struct{}, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, err := promQuery(u, query); err == nil && len(v) > 0 {
			return
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited")
		case <-ctx.Done():
			t.Fatalf("prometheus: %s never held", query)
		case <-tick.C:
		}
	}
}

func promQuery(u, q string) ([]float64, error) {
	resp, err := http.Get(u + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		return nil, err
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
		return nil, err
	}
	var out []float64
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// variant is r's model with version and edit applied, encoded as a model.json.
func (r *nodeRelease) variant(t *testing.T, version string, edit func(m *model.Linear)) (*model.Linear, []byte) {
	t.Helper()
	m := *r.model
	m.Weights = append([]float64(nil), m.Weights...)
	m.Version = version
	edit(&m)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &m, b
}

// predictionSD is the standard deviation of r's model's predictions on the test rows.
func (r *nodeRelease) predictionSD() float64 {
	var sum, sq float64
	for _, x := range r.rows {
		y := r.model.Predict(x)
		sum += y
		sq += y * y
	}
	n := float64(len(r.rows))
	return math.Sqrt((sq - sum*sum/n) / (n - 1))
}

// TestNodeCanaryAnalysis: on a real node, under live traffic that follows the Service's Ready
// EndpointSlices, a canary analysed from a real Prometheus scraping the pods: one whose model
// answers two standard deviations off (healthy errors and latency: only the model-quality
// check sees it) fails its analysis and is rolled back, the previous model serving again; one
// as good passes and is promoted, serving every test row as the model does; and one analysed
// on a handful of requests is INCONCLUSIVE, saying how many would decide, and rolled back too.
// No request fails throughout.
func TestNodeCanaryAnalysis(t *testing.T) {
	r := runOnNode(t, "  replicas: 2\n  pdb: {min_available: 1}\n  progress_deadline_seconds: 60\n")
	c := r.node.Client
	servingPods(t, c, r.ns, r.ref, 2)
	prom := startNodePrometheus(t, r.node, r.ns, 2)

	sd := r.predictionSD()
	shifted, shiftedJSON := r.variant(t, "1.0.1", func(m *model.Linear) { m.Bias += 2 * sd })
	worse := r.modelRelease(t, "1.0.1", shiftedJSON)
	_, sameJSON := r.variant(t, "1.0.2", func(*model.Linear) {})
	good := r.modelRelease(t, "1.0.2", sameJSON)
	_, thinJSON := r.variant(t, "1.0.3", func(*model.Linear) {})
	thin := r.modelRelease(t, "1.0.3", thinJSON)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	tg, err := deploy.NewTarget(r.node.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	tg.Log = testLog{t}
	cfg := r.spec.Deploy
	cfg.Strategy, cfg.Steps, cfg.Pause = deploy.Canary, []int{50, 100}, "20s"
	cfg.Analysis = deploy.AnalysisConfig{
		Prometheus:   deploy.PrometheusConfig{URL: prom, Window: "15s"},
		MaxErrorRate: 0.05, MaxLatencyP99Ms: 1000, MaxPredictionShift: 0.25,
	}
	deployRelease := func(version, ref string, a deploy.Analysis) (*deploy.Report, error) {
		return tg.Deploy(ctx, deploy.Input{
			Config: cfg, Namespace: r.ns, Analysis: a,
			Release:  deploy.Release{Name: "diabetes", Version: version, Image: ref},
			Verifier: pipeline.Verifier(r.spec.VerifyPolicy()),
		})
	}

	// The load goes round the pods as it goes round the rows: with a number of rows prime to
	// the pods' (1, 2 or 3 here), every pod sees every row, and the versions are compared on
	// the same inputs. With 88 rows and 2 pods, one would see the even rows, the other the odd.
	rows := r.rows
	for len(rows)%2 == 0 || len(rows)%3 == 0 {
		rows = rows[:len(rows)-1]
	}
	ep := followEndpoints(ctx, t, c, r.ns, "diabetes")
	l := startLoad(ctx, ep, rows, 1_000_000, func(rows [][]float64, got []float64) error {
		// Either model may answer while the canary runs; anything else is a failure.
		if got[0] != r.model.Predict(rows[0]) && got[0] != shifted.Predict(rows[0]) {
			return fmt.Errorf("prediction %v is neither model's", got[0])
		}
		return nil
	})

	// The worse model: the analysis fails on the prediction shift alone, and it is rolled back.
	rep, err := deployRelease("1.0.1", worse, nil)
	if !errors.Is(err, deploy.ErrRolledBack) || !errors.Is(err, deploy.ErrAnalysisFailed) {
		t.Fatalf("canary of the worse model: %v; want ErrRolledBack after ErrAnalysisFailed", err)
	}
	t.Logf("the worse model's canary: %v", err)
	if !strings.Contains(err.Error(), modelgate.CheckPredictionShift+" FAIL") || strings.Contains(err.Error(), "canary.error_rate") || strings.Contains(err.Error(), "canary.latency_p99") {
		t.Errorf("the worse model's analysis: %v; want the prediction shift check alone to fail", err)
	}
	if rep.Current == nil || rep.Current.Version != "1.0.0" {
		t.Fatalf("after the worse model: current %+v; want 1.0.0", rep.Current)
	}
	r.checkPredictions(t, servingPods(t, c, r.ns, r.ref, 2))

	// As good a model: the analysis passes and it is promoted.
	rep, err = deployRelease("1.0.2", good, nil)
	if err != nil {
		t.Fatalf("canary of as good a model: %v", err)
	}
	if rep.Result != deploy.ResultRolledOut {
		t.Errorf("as good a model: result %s; want %s", rep.Result, deploy.ResultRolledOut)
	}
	sent, failed, errs := l.stop()
	t.Logf("%d requests during both canaries, %d failed", sent, failed)
	if sent == 0 || failed != 0 {
		t.Errorf("%d of %d requests failed; want none: %v", failed, sent, errs)
	}
	r.checkPredictions(t, servingPods(t, c, r.ns, good, 2))

	// Thin traffic: the load has stopped; after the step's pause (longer than the window, so
	// that the window holds no series of the canary just promoted), a bounded handful of
	// requests to each track, scraped, then analysed.
	const few = 20
	analysis := deploy.AnalysisFunc(func(ctx context.Context, s deploy.Step) error {
		// The canary scraped once before its requests: increase() needs a sample before them.
		promWait(t, prom, nil, `up{track="canary"} == 1`)
		pods, err := c.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: deploy.LabelName + "=diabetes"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || !podReady(&p) {
				continue
			}
			for i := range few {
				if _, err := predict(net.JoinHostPort(p.Status.PodIP, fmt.Sprint(deploy.Port)), r.rows[i:i+1]); err != nil {
					return err
				}
			}
		}
		sent := time.Now()
		// Every target scraped since (timestamp of the samples themselves: after an operator it
		// would be the evaluation time).
		promWait(t, prom, nil, fmt.Sprintf(`min(timestamp(up{pod=~".+"})) > %d`, sent.Unix()+1))
		// And the window the analysis reads holds them for both tracks (a loaded machine can
		// delay scrapes past the first wait).
		for _, track := range []string{"canary", "stable"} {
			promWait(t, prom, nil, fmt.Sprintf(`sum(increase(modelci_http_requests_total{track=%q,route="/predict"}[%s])) > 0`, track, cfg.Analysis.Prometheus.Window))
		}
		return deploy.NewPrometheus(cfg.Analysis).Analyze(ctx, s)
	})
	rep, err = deployRelease("1.0.3", thin, analysis)
	t.Logf("the thinly analysed canary: %v", err)
	if !errors.Is(err, deploy.ErrRolledBack) || !errors.Is(err, deploy.ErrAnalysisFailed) {
		t.Fatalf("canary on %d requests: %v; want ErrRolledBack after ErrAnalysisFailed", few, err)
	}
	if !strings.Contains(err.Error(), "INCONCLUSIVE") || !strings.Contains(err.Error(), "canary requests would decide") {
		t.Errorf("canary on %d requests: %v; want INCONCLUSIVE saying how many requests would decide", few, err)
	}
	if rep.Current == nil || rep.Current.Version != "1.0.2" {
		t.Fatalf("after the thin canary: current %+v; want 1.0.2", rep.Current)
	}
	r.checkPredictions(t, servingPods(t, c, r.ns, good, 2))
}

// checkModel fails t unless every pod answers every one of r's test rows as m does.
func (r *nodeRelease) checkModel(t *testing.T, pods []corev1.Pod, m *model.Linear) {
	t.Helper()
	for _, p := range pods {
		got, err := predict(net.JoinHostPort(p.Status.PodIP, fmt.Sprint(deploy.Port)), r.rows)
		if err != nil {
			t.Fatalf("pod %s: %v", p.Name, err)
		}
		for i, x := range r.rows {
			if want := m.Predict(x); got[i] != want {
				t.Fatalf("pod %s, test row %d: prediction %v; model %s says %v", p.Name, i, got[i], m.Version, want)
			}
		}
	}
}

// TestNodeRollbackAndPromote: on a real node, `modelci rollback` (pipeline.Rollback) after a
// second release ends with the pods answering every test row as the first model does, and
// promote from staging to prod (two namespaces, two repositories of the node's registry) ends
// with prod's pods running the promoted image from prod's repository and answering as the
// promoted model does: checked by request, not by object status.
func TestNodeRollbackAndPromote(t *testing.T) {
	n := k8stest.StartNode(t)
	prodNS := n.Namespace(t)
	prod := n.Registry + "/" + prodNS + "/diabetes"
	r := runOnNode(t, "  replicas: 2\n  progress_deadline_seconds: 60\n"+fmt.Sprintf(
		"environments:\n  staging: {repository: @REPO@, context: %s}\n  prod: {repository: %s, context: %s, namespace: %s}\n",
		k8stest.Context, prod, k8stest.Context, prodNS))
	c := r.node.Client
	r.checkModel(t, servingPods(t, c, r.ns, r.ref, 2), r.model)

	// 1.1.0: another model, its answers shifted, so that each pod says which one it serves.
	second, secondJSON := r.variant(t, "1.1.0", func(m *model.Linear) { m.Bias += 10 })
	secondRef := r.modelRelease(t, "1.1.0", secondJSON)
	tg, err := deploy.NewTarget(n.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	tg.Log = testLog{t}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	policy := r.spec.VerifyPolicy()
	if _, err := tg.Deploy(ctx, deploy.Input{Config: r.spec.Deploy, Namespace: r.ns, Release: deploy.Release{Name: "diabetes", Version: "1.1.0", Image: secondRef}, Verifier: pipeline.Verifier(policy)}); err != nil {
		t.Fatal(err)
	}
	r.checkModel(t, servingPods(t, c, r.ns, secondRef, 2), second)

	rep, err := pipeline.Rollback(ctx, tg, pipeline.RollbackInput{Name: "diabetes", Namespace: r.ns, Reason: "test", Policy: &policy})
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if rep.Current == nil || rep.Current.Version != "1.0.0" {
		t.Fatalf("rollback: current %+v; want 1.0.0", rep.Current)
	}
	r.checkModel(t, servingPods(t, c, r.ns, r.ref, 2), r.model)

	// Promote 1.1.0, which staging no longer runs, to prod.
	res, err := pipeline.Promote(ctx, r.spec, pipeline.PromoteInput{
		Name: "diabetes", Version: "1.1.0", From: "staging", To: "prod", Reason: "test",
		Signer: r.signer, Kubeconfig: n.Kubeconfig, Log: testLog{t},
	})
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	want := prod + secondRef[strings.LastIndex(secondRef, "@"):]
	if res.Image != want {
		t.Errorf("promoted image %s; want %s", res.Image, want)
	}
	r.checkModel(t, servingPods(t, c, prodNS, want, 2), second)
	// Staging is as the rollback left it.
	r.checkModel(t, servingPods(t, c, r.ns, r.ref, 2), r.model)
}

// BenchmarkNodeRollbackAfterFailedRelease measures, on the real node, a release whose model
// cannot load, from the deploy call to the previous release restored and answering:
// rollback-ms is all of it, detect-ms to the failure being detected (the progress deadline,
// 15 s here, bounds it), restore-ms from there. Run it with BenchmarkNodeDeployToServing.
func BenchmarkNodeRollbackAfterFailedRelease(b *testing.B) {
	n := k8stest.StartNode(b)
	sp, res, signer := publishOnNode(b, n, "bench/rollback/diabetes")
	r := &nodeRelease{node: n, spec: sp, ref: res.Ref, signer: signer}
	bad := r.corruptRelease(b, "1.0.1")
	cfg := sp.Deploy
	cfg.Replicas, cfg.ProgressDeadlineSeconds = 2, 15
	row := [][]float64{make([]float64, 10)}
	verifier := pipeline.Verifier(sp.VerifyPolicy())

	var total, detect time.Duration
	for b.Loop() {
		b.StopTimer()
		ns := n.Namespace(b)
		tg, err := deploy.NewTarget(n.Kubeconfig, k8stest.Context)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tg.Deploy(b.Context(), deploy.Input{Config: cfg, Namespace: ns, Release: deploy.Release{Name: "diabetes", Version: "1.0.0", Image: res.Ref}, Verifier: verifier}); err != nil {
			b.Fatal(err)
		}
		// The moment deploy says the release failed and it restores the previous one.
		detected := &stampWriter{match: "; restoring "}
		tg.Log = detected
		b.StartTimer()
		start := time.Now()
		_, err = tg.Deploy(b.Context(), deploy.Input{Config: cfg, Namespace: ns, Release: deploy.Release{Name: "diabetes", Version: "1.0.1", Image: bad}, Verifier: verifier})
		if !errors.Is(err, deploy.ErrRolledBack) {
			b.Fatalf("the broken release: %v; want ErrRolledBack", err)
		}
		firstAnswer(b, n, ns, row)
		total += time.Since(start)
		detect += detected.at.Sub(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "rollback-ms/op")
	b.ReportMetric(float64(detect.Milliseconds())/float64(b.N), "detect-ms/op")
	b.ReportMetric(float64((total-detect).Milliseconds())/float64(b.N), "restore-ms/op")
}

// stampWriter records when a line containing match is first written.
type stampWriter struct {
	match string
	at    time.Time
}

func (w *stampWriter) Write(p []byte) (int, error) {
	if w.at.IsZero() && strings.Contains(string(p), w.match) {
		w.at = time.Now()
	}
	return len(p), nil
}
