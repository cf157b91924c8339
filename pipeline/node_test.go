package pipeline_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/sign"
)

// nodeRelease is a release `modelci run` built, pushed, signed and deployed on the real node.
type nodeRelease struct {
	node *k8stest.Node
	ns   string
	// repo is the test's own repository on the node's registry, which the tests share.
	repo  string
	dir   string
	spec  *spec.Spec
	ref   string
	model *model.Linear
	// rows are the test split's rows, every one of which the pods are asked about.
	rows   [][]float64
	signer sign.SignerSource
}

// runOnNode runs the linreg example with deploy.enabled on the real node: the image is pushed to
// the node's loopback registry, in a repository of the test's own (@REPO@ in deployYAML names
// it), and deployed from there by digest.
func runOnNode(t *testing.T, deployYAML string) *nodeRelease {
	t.Helper()
	n := k8stest.StartNode(t)
	ns := n.Namespace(t)
	repo := n.Registry + "/" + ns + "/diabetes"
	deployYAML = strings.ReplaceAll(deployYAML, "@REPO@", repo)
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t, func(s string) string {
		return s + "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n" +
			"deploy:\n  enabled: true\n  context: " + k8stest.Context + "\n  namespace: " + ns + "\n" + deployYAML
	})
	os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644)
	t.Setenv("MODELCI_KEY_PASSWORD", "pw")
	res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)),
		pipeline.WithRepository(repo), pipeline.WithKubeconfig(n.Kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(res.RunDir, "model", "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Load(context.Background(), filepath.Join(dir, "data", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := data.Split(ds, *sp.Data.TestFraction, *sp.Data.Seed)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([][]float64, test.Rows())
	for i := range rows {
		rows[i] = test.Row(i)
	}
	return &nodeRelease{node: n, ns: ns, repo: repo, dir: dir, spec: sp, ref: res.Ref, model: m, rows: rows, signer: sign.Key(priv, []byte("pw"))}
}

// servingPods returns the app's Ready pods, failing t unless there are want of them, all
// running image.
func servingPods(t *testing.T, c kubernetes.Interface, ns, image string, want int) []corev1.Pod {
	t.Helper()
	pods, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: deploy.LabelName + "=diabetes"})
	if err != nil {
		t.Fatal(err)
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			ready = append(ready, p)
		}
	}
	if len(ready) != want {
		t.Fatalf("%d Ready pods of %d; want %d", len(ready), len(pods.Items), want)
	}
	digest := image[strings.LastIndex(image, "@")+1:]
	for _, p := range ready {
		if got := p.Spec.Containers[0].Image; got != image {
			t.Errorf("pod %s runs %s; want %s", p.Name, got, image)
		}
		// What the runtime pulled, not only what the spec asked for.
		if len(p.Status.ContainerStatuses) != 1 || !strings.HasSuffix(p.Status.ContainerStatuses[0].ImageID, digest) {
			t.Errorf("pod %s: container statuses %+v; want image %s", p.Name, p.Status.ContainerStatuses, digest)
		}
	}
	return ready
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// client sends each request on a new connection: a server that drains closes its idle ones,
// and a POST on a connection closed under it is not retried.
var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// predict asks the server at addr (HOST:PORT) about rows.
func predict(addr string, rows [][]float64) ([]float64, error) {
	body, err := json.Marshal(map[string]any{"instances": rows})
	if err != nil {
		return nil, err
	}
	resp, err := client.Post("http://"+addr+"/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/predict: %s: %s", addr, resp.Status, b)
	}
	var got struct{ Predictions []float64 }
	if err := json.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("%s/predict: %w", addr, err)
	}
	if len(got.Predictions) != len(rows) {
		return nil, fmt.Errorf("%s/predict: %d predictions for %d rows", addr, len(got.Predictions), len(rows))
	}
	return got.Predictions, nil
}

// checkPredictions fails t unless every pod answers every test row as the in-process model does.
func (r *nodeRelease) checkPredictions(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		got, err := predict(net.JoinHostPort(p.Status.PodIP, fmt.Sprint(deploy.Port)), r.rows)
		if err != nil {
			t.Fatalf("pod %s: %v", p.Name, err)
		}
		for i, x := range r.rows {
			if want := r.model.Predict(x); got[i] != want {
				t.Errorf("pod %s, test row %d: prediction %v, the in-process model says %v", p.Name, i, got[i], want)
			}
		}
	}
}

// TestNodeServesModel: on a real node, the Deployment `modelci run` rolled out runs the pushed
// image by digest, and each pod answers /predict on every test row as the trained model does.
func TestNodeServesModel(t *testing.T) {
	r := runOnNode(t, "  replicas: 2\n")
	pods := servingPods(t, r.node.Client, r.ns, r.ref, 2)
	r.checkPredictions(t, pods)
}

// endpoints follows a Service's EndpointSlices, as kube-proxy would, keeping the addresses of
// the Ready endpoints: with no kube-proxy on the node, the test's client balances itself.
type endpoints struct {
	mu     sync.Mutex
	slices map[string][]string
	next   int
}

func followEndpoints(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, service string) *endpoints {
	t.Helper()
	e := &endpoints{slices: map[string][]string{}}
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service}
	list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		e.set(&s)
	}
	sel.ResourceVersion = list.ResourceVersion
	w, err := c.DiscoveryV1().EndpointSlices(ns).Watch(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			if ev.Type == "DELETED" {
				s.Endpoints = nil
			}
			e.set(s)
		}
	}()
	return e
}

func (e *endpoints) set(s *discoveryv1.EndpointSlice) {
	var addrs []string
	for _, ep := range s.Endpoints {
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		for _, a := range ep.Addresses {
			addrs = append(addrs, net.JoinHostPort(a, fmt.Sprint(deploy.Port)))
		}
	}
	e.mu.Lock()
	e.slices[s.Name] = addrs
	e.mu.Unlock()
}

// pick returns the next Ready address, round robin, or "" when there is none.
func (e *endpoints) pick() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var all []string
	for _, a := range e.slices {
		all = append(all, a...)
	}
	if len(all) == 0 {
		return ""
	}
	slices.Sort(all)
	e.next++
	return all[e.next%len(all)]
}

// load sends requests for a few test rows, one after another, to the Service's Ready endpoints
// until stop, at most max; check judges each answer.
type load struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
	done         chan struct{}
	cancel       context.CancelFunc
}

func startLoad(ctx context.Context, e *endpoints, rows [][]float64, max int, check func(rows [][]float64, got []float64) error) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(l.done)
		for i := 0; i < max && ctx.Err() == nil; i++ {
			batch := rows[i%len(rows) : i%len(rows)+1]
			l.sent.Add(1)
			var err error
			if addr := e.pick(); addr == "" {
				err = errors.New("no Ready endpoint: the service is down")
			} else if got, perr := predict(addr, batch); perr != nil {
				err = perr
			} else {
				err = check(batch, got)
			}
			if err != nil && ctx.Err() == nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err.Error())
				}
				l.mu.Unlock()
			}
		}
	}()
	return l
}

// stop ends the load and returns how many requests were sent and failed, with the first errors.
func (l *load) stop() (sent, failed int64, errs []string) {
	l.cancel()
	<-l.done
	return l.sent.Load(), l.failed.Load(), l.errs
}

// corruptRelease builds version's image from r's, with a model file the server cannot load on
// top, and pushes, signs and attests it (gate PASS, under the spec's gate policy) as `modelci
// run` would, so that verification passes and only the pods can tell it is broken.
func (r *nodeRelease) corruptRelease(t testing.TB, version string) string {
	t.Helper()
	return r.modelRelease(t, version, []byte(`{"this is": "not a model"`))
}

// modelRelease builds version's image from r's with modelJSON as its model/model.json, and
// pushes, signs and attests it as corruptRelease does.
func (r *nodeRelease) modelRelease(t testing.TB, version string, modelJSON []byte) string {
	t.Helper()
	good, err := name.ParseReference(r.ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(good)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "model/model.json", Mode: 0o644, Size: int64(len(modelJSON)), Typeflag: tar.TypeReg})
	tw.Write(modelJSON)
	tw.Close()
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, map[string]string{sign.AnnotationModelName: "diabetes", sign.AnnotationModelVersion: version}).(v1.Image)
	tag := good.Context().Tag(modelgate.Tag(version))
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := good.Context().Name() + "@" + d.String()
	if _, err := sign.Sign(t.Context(), ref, r.signer); err != nil {
		t.Fatal(err)
	}
	g := modelgate.GatePredicate{
		Model: modelgate.ModelRef{Name: "diabetes", Version: version}, Verdict: modelgate.Pass,
		Policy: r.spec.Gate, PolicyDigest: r.spec.Gate.Digest(),
		Dataset: modelgate.DatasetRef{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 442},
	}
	if _, err := sign.Attest(t.Context(), ref, modelgate.GatePredicateType, g, r.signer); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestNodeBrokenReleaseRollsBack: a release whose model cannot load never becomes Ready on a
// real node, its progress deadline fires, and the automatic rollback restores the previous
// release, which serves again; requests sent throughout to the Ready endpoints never fail.
func TestNodeBrokenReleaseRollsBack(t *testing.T) {
	r := runOnNode(t, "  replicas: 2\n  pdb: {min_available: 1}\n  progress_deadline_seconds: 15\n")
	servingPods(t, r.node.Client, r.ns, r.ref, 2)
	bad := r.corruptRelease(t, "1.0.1")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ep := followEndpoints(ctx, t, r.node.Client, r.ns, "diabetes")
	l := startLoad(ctx, ep, r.rows, 100000, func(rows [][]float64, got []float64) error {
		if want := r.model.Predict(rows[0]); got[0] != want {
			return fmt.Errorf("prediction %v; the serving model says %v", got[0], want)
		}
		return nil
	})
	crashed := watchCrashes(ctx, t, r.node.Client, r.ns, bad)

	tg, err := deploy.NewTarget(r.node.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	tg.Log = testLog{t}
	cfg := r.spec.Deploy
	rep, err := tg.Deploy(ctx, deploy.Input{
		Config: cfg, Namespace: r.ns,
		Release:  deploy.Release{Name: "diabetes", Version: "1.0.1", Image: bad},
		Verifier: pipeline.Verifier(r.spec.VerifyPolicy()),
	})
	sent, failed, errs := l.stop()
	if !errors.Is(err, deploy.ErrRolledBack) {
		t.Fatalf("deploy of the broken release: %v; want ErrRolledBack", err)
	}
	if rep.Result != deploy.ResultRolledBack || rep.Current == nil || rep.Current.Version != "1.0.0" {
		t.Fatalf("report: result %s, current %+v; want rolled back to 1.0.0", rep.Result, rep.Current)
	}
	t.Logf("%d requests during the broken rollout and the rollback, %d failed", sent, failed)
	if sent == 0 || failed != 0 {
		t.Errorf("%d of %d requests failed; want none: %v", failed, sent, errs)
	}
	pods := servingPods(t, r.node.Client, r.ns, r.ref, 2)
	r.checkPredictions(t, pods)
	// The broken release's pods really ran and really failed: the model, not the harness,
	// kept them from being Ready.
	if exits := crashed(); len(exits) == 0 {
		t.Errorf("no container of the broken release exited: its server should fail on the corrupt model")
	} else {
		t.Logf("the broken release's containers exited with %v", exits)
	}
}

// watchCrashes watches the pods running image and returns a function that stops watching and
// returns the exit codes of their containers' failed runs.
func watchCrashes(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, image string) func() []int32 {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var exits []int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Spec.Containers[0].Image != image {
				continue
			}
			for _, cs := range p.Status.ContainerStatuses {
				for _, term := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
					if term != nil && term.ExitCode != 0 && !seen[term.ContainerID] {
						seen[term.ContainerID] = true
						exits = append(exits, term.ExitCode)
					}
				}
			}
		}
	}()
	return func() []int32 {
		cancel()
		w.Stop()
		<-done
		return exits
	}
}

// testLog sends progress lines to the test log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestNodeRollingUpdateUnderLoad: a rolling update on a real node, from one `modelci run` to
// the next, under steady load that follows the Service's Ready EndpointSlices, fails no request:
// terminating pods keep serving through their pre-stop wait, then drain on SIGTERM.
func TestNodeRollingUpdateUnderLoad(t *testing.T) {
	r := runOnNode(t, "  replicas: 2\n  pdb: {min_available: 1}\n  progress_deadline_seconds: 60\n")
	old := servingPods(t, r.node.Client, r.ns, r.ref, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ep := followEndpoints(ctx, t, r.node.Client, r.ns, "diabetes")
	l := startLoad(ctx, ep, r.rows, 100000, func(rows [][]float64, got []float64) error {
		// Both releases train the same model on the same split.
		if want := r.model.Predict(rows[0]); got[0] != want {
			return fmt.Errorf("prediction %v; the model says %v", got[0], want)
		}
		return nil
	})
	path := filepath.Join(r.dir, "modelci.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte("version: 1.0.0"), []byte("version: 1.1.0"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := runProject(t, r.dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)),
		pipeline.WithRepository(r.repo), pipeline.WithKubeconfig(r.node.Kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	// Keep the load on until every old pod has gone: their drain is what is tested.
	for _, p := range old {
		waitPodGone(ctx, t, r.node.Client, p)
	}
	sent, failed, errs := l.stop()
	t.Logf("%d requests during the rolling update, %d failed", sent, failed)
	if sent == 0 || failed != 0 {
		t.Errorf("%d of %d requests failed; want none: %v", failed, sent, errs)
	}
	if res.Ref == r.ref {
		t.Fatalf("the second run's image %s is the first's", res.Ref)
	}
	r.checkPredictions(t, servingPods(t, r.node.Client, r.ns, res.Ref, 2))
}

// waitPodGone returns when pod p no longer exists.
func waitPodGone(ctx context.Context, t *testing.T, c kubernetes.Interface, p corev1.Pod) {
	t.Helper()
	w, err := c.CoreV1().Pods(p.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if cur, err := c.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); err != nil || cur.UID != p.UID {
		return
	}
	for ev := range w.ResultChan() {
		if ev.Type == "DELETED" {
			return
		}
	}
	t.Fatalf("pod %s still there: %v", p.Name, ctx.Err())
}

// publishOnNode publishes the linreg example to repo on the node's registry, signed, as
// modelci run does, for the benchmarks: its spec, the run's result and the signer.
func publishOnNode(b *testing.B, n *k8stest.Node, repo string) (*spec.Spec, *pipeline.Result, sign.SignerSource) {
	b.Helper()
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	signer := sign.Key(priv, []byte("pw"))
	src := benchProject(b, "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n")
	os.WriteFile(filepath.Join(src, "cosign.key"), priv, 0o600)
	os.WriteFile(filepath.Join(src, "cosign.pub"), pub, 0o644)
	b.Setenv("MODELCI_KEY_PASSWORD", "pw")
	sp, err := spec.Load(filepath.Join(src, "modelci.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	rt, err := image.Runtime(b.Context(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(".."))
	if err != nil {
		b.Fatal(err)
	}
	res, err := pipeline.Run(b.Context(), sp, pipeline.WithRuntime("linux/amd64", rt), pipeline.WithRepository(n.Registry+"/"+repo), pipeline.WithSigner(signer))
	if err != nil {
		b.Fatal(err)
	}
	return sp, res, signer
}

// BenchmarkNodeDeployToServing measures, on the real node, a new release from deploy to its
// first answered request: modelci's deploy (verify, lease, apply, watch, history) against
// `kubectl apply` + `kubectl rollout status` of the same manifests, in one run, each into a
// namespace of its own. It reports both and their ratio (modelci/kubectl).
func BenchmarkNodeDeployToServing(b *testing.B) {
	n := k8stest.StartNode(b)
	sp, res, _ := publishOnNode(b, n, "bench/deploy/diabetes")
	cfg := sp.Deploy
	cfg.Replicas = 2
	rel := deploy.Release{Name: "diabetes", Version: sp.Model.Version, Image: res.Ref}
	row := [][]float64{make([]float64, 10)}

	var modelci, kubectl time.Duration
	for b.Loop() {
		ns := n.Namespace(b)
		start := time.Now()
		tg, err := deploy.NewTarget(n.Kubeconfig, k8stest.Context)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tg.Deploy(b.Context(), deploy.Input{Config: cfg, Namespace: ns, Release: rel, Verifier: pipeline.Verifier(sp.VerifyPolicy())}); err != nil {
			b.Fatal(err)
		}
		firstAnswer(b, n, ns, row)
		modelci += time.Since(start)

		ns = n.Namespace(b)
		m, err := deploy.Render(cfg, rel, ns)
		if err != nil {
			b.Fatal(err)
		}
		mdir := b.TempDir()
		if _, err := m.WriteDir(mdir); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if out, err := n.Kubectl(b.Context(), "apply", "-f", mdir).CombinedOutput(); err != nil {
			b.Fatalf("kubectl apply: %v: %s", err, out)
		}
		if out, err := n.Kubectl(b.Context(), "-n", ns, "rollout", "status", "deployment/diabetes", "--timeout=2m").CombinedOutput(); err != nil {
			b.Fatalf("kubectl rollout status: %v: %s", err, out)
		}
		firstAnswer(b, n, ns, row)
		kubectl += time.Since(start)
	}
	b.ReportMetric(float64(modelci.Milliseconds())/float64(b.N), "modelci-ms/op")
	b.ReportMetric(float64(kubectl.Milliseconds())/float64(b.N), "kubectl-ms/op")
	b.ReportMetric(float64(modelci)/float64(kubectl), "modelci/kubectl")
}

// benchProject is project for a benchmark: the linreg example with extra appended to its spec.
func benchProject(b *testing.B, extra string) string {
	dir := b.TempDir()
	src := filepath.Join("..", "examples", "linreg")
	sp, err := os.ReadFile(filepath.Join(src, "modelci.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(src, "data", "diabetes.csv"))
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "modelci.yaml"), append(sp, extra...), 0o644)
	os.WriteFile(filepath.Join(dir, "data", "diabetes.csv"), csv, 0o644)
	return dir
}

// firstAnswer returns once a Ready pod of the app in ns answers /predict.
func firstAnswer(b *testing.B, n *k8stest.Node, ns string, row [][]float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	w, err := n.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	pods, err := n.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// A Ready pod is asked until it answers (its readiness probe passed, so it soon does).
	try := func(p *corev1.Pod) bool {
		if !podReady(p) || p.Status.PodIP == "" {
			return false
		}
		for ctx.Err() == nil {
			if _, err := predict(net.JoinHostPort(p.Status.PodIP, fmt.Sprint(deploy.Port)), row); err == nil {
				return true
			}
		}
		return false
	}
	for i := range pods.Items {
		if try(&pods.Items[i]) {
			return
		}
	}
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok && try(p) {
			return
		}
	}
	b.Fatalf("no pod answered in %s: %v", ns, ctx.Err())
}
