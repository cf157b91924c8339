package deploy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/stages/deploy"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// image returns a distinct digest reference per version.
func image(version string) string {
	sum := sha256.Sum256([]byte(version))
	return "registry.test:5000/models/diabetes@sha256:" + hex.EncodeToString(sum[:])
}

// insecure restores the releases these tests deploy unverified.
var insecure = deploy.Trust{InsecureSkipVerify: true}

func rel(version string) deploy.Release {
	return deploy.Release{Name: "diabetes", Version: version, Image: image(version), RunID: "run-" + version, Who: "tester"}
}

// logWriter sends progress lines to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func target(t testing.TB, c *k8stest.Cluster) *deploy.Target {
	t.Helper()
	tg, err := deploy.NewTarget(c.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	tg.Log = logWriter{t}
	return tg
}

func testConfig() deploy.Config {
	cfg := deploy.Defaults()
	cfg.Replicas = 3
	cfg.ProgressDeadlineSeconds = 30
	return cfg
}

func deployOK(t *testing.T, tg *deploy.Target, ns string, cfg deploy.Config, r deploy.Release) *deploy.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := tg.Deploy(ctx, deploy.Input{Config: cfg, Release: r, Namespace: ns, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("deploy %s: %v", r.Version, err)
	}
	if rep.Result != deploy.ResultRolledOut || rep.Current == nil || rep.Current.Version != r.Version {
		t.Fatalf("deploy %s: result %s, current %+v", r.Version, rep.Result, rep.Current)
	}
	return rep
}

func getDeployment(t *testing.T, c *k8stest.Cluster, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func assertServing(t *testing.T, c *k8stest.Cluster, ns, version string, replicas int32) {
	t.Helper()
	d := getDeployment(t, c, ns, "diabetes")
	if got := d.Spec.Template.Spec.Containers[0].Image; got != image(version) {
		t.Errorf("deployment image %s; want %s (%s)", got, image(version), version)
	}
	if *d.Spec.Replicas != replicas || d.Status.AvailableReplicas != replicas || d.Status.UpdatedReplicas != replicas {
		t.Errorf("deployment replicas %d, available %d, updated %d; want %d", *d.Spec.Replicas, d.Status.AvailableReplicas, d.Status.UpdatedReplicas, replicas)
	}
}

func versions(entries []deploy.Entry) string {
	var s []string
	for _, e := range entries {
		s = append(s, fmt.Sprintf("%s:%s:%s", e.Version, e.Action, e.Status))
	}
	return strings.Join(s, " ")
}

func TestDeployAndUpdate(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := testConfig()

	rep := deployOK(t, tg, ns, cfg, rel("1.0.0"))
	if rep.Previous != nil || rep.Current.Verdict != deploy.Unverified || rep.Current.Who != "tester" || rep.Current.RunID != "run-1.0.0" {
		t.Errorf("first deploy: previous %+v, current %+v", rep.Previous, rep.Current)
	}
	assertServing(t, c, ns, "1.0.0", 3)
	d := getDeployment(t, c, ns, "diabetes")
	applied := false
	for _, mf := range d.ManagedFields {
		applied = applied || (mf.Manager == deploy.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
	}
	if !applied {
		t.Errorf("deployment not server-side applied by %s: %+v", deploy.FieldManager, d.ManagedFields)
	}
	if _, err := c.Client.CoreV1().Services(ns).Get(context.Background(), "diabetes", metav1.GetOptions{}); err != nil {
		t.Errorf("service: %v", err)
	}

	rep = deployOK(t, tg, ns, cfg, rel("1.1.0"))
	if rep.Previous == nil || rep.Previous.Version != "1.0.0" {
		t.Errorf("update: previous %+v; want 1.0.0", rep.Previous)
	}
	assertServing(t, c, ns, "1.1.0", 3)

	// History and status are read back from the cluster by a new client, as from another machine.
	other := target(t, c)
	h, err := other.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(h.History); got != "1.0.0:deploy:deployed 1.1.0:deploy:deployed" {
		t.Errorf("history %s", got)
	}
	st, err := other.Status(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current.Version != "1.1.0" || len(st.Workloads) != 1 || st.Workloads[0].Available != 3 || st.Workloads[0].Version != "1.1.0" {
		t.Errorf("status: current %+v, workloads %+v", st.Current, st.Workloads)
	}
	if _, err := other.Status(context.Background(), "nothing", ns); !errors.Is(err, deploy.ErrNoRelease) {
		t.Errorf("status of an unknown app: %v; want ErrNoRelease", err)
	}
}

// minAvailable watches Deployment ns/name and records the least availableReplicas seen
// until stop is called.
func minAvailable(t *testing.T, c *k8stest.Cluster, ns, name string) (stop func() int32) {
	t.Helper()
	d := getDeployment(t, c, ns, name)
	w, err := c.Client.AppsV1().Deployments(ns).Watch(context.Background(), metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: d.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	least := d.Status.AvailableReplicas
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified {
				continue
			}
			if d, ok := ev.Object.(*appsv1.Deployment); ok {
				least = min(least, d.Status.AvailableReplicas)
			}
		}
	}()
	return func() int32 {
		w.Stop()
		<-done
		return least
	}
}

func TestBrokenReleaseRollsBackAutomatically(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := testConfig()
	deployOK(t, tg, ns, cfg, rel("1.0.0"))

	stop := minAvailable(t, c, ns, "diabetes")
	broken := cfg
	broken.ProgressDeadlineSeconds = 3
	broken.PodAnnotations = map[string]string{k8stest.NeverReadyAnnotation: "true"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := tg.Deploy(ctx, deploy.Input{Config: broken, Release: rel("2.0.0"), Namespace: ns, InsecureSkipVerify: true})
	least := stop()
	if !errors.Is(err, deploy.ErrRolledBack) || !errors.Is(err, deploy.ErrProgressDeadline) {
		t.Fatalf("broken deploy: %v; want ErrRolledBack and ErrProgressDeadline", err)
	}
	if rep.Result != deploy.ResultRolledBack || rep.Current.Version != "1.0.0" || rep.Current.Action != deploy.ActionAutoRollback {
		t.Errorf("report: result %s, current %+v", rep.Result, rep.Current)
	}
	if least < cfg.Replicas {
		t.Errorf("available replicas fell to %d during the broken rollout; want at least %d", least, cfg.Replicas)
	}
	assertServing(t, c, ns, "1.0.0", 3)
	if a := getDeployment(t, c, ns, "diabetes").Spec.Template.Annotations[k8stest.NeverReadyAnnotation]; a != "" {
		t.Errorf("restored pod template still carries the broken release's annotation")
	}
	h, err := tg.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(h.History); got != "1.0.0:deploy:deployed 2.0.0:deploy:failed 1.0.0:auto-rollback:deployed" {
		t.Errorf("history %s", got)
	}
}

func TestCanarySteps(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := testConfig()
	cfg.Replicas = 4
	deployOK(t, tg, ns, cfg, rel("1.0.0"))

	cfg.Strategy = deploy.Canary
	cfg.Steps = []int{10, 50, 100}
	type counts struct{ percent, canary, stable, canaryReady, stableReady int32 }
	var seen []counts
	podsReady := deploy.PodsReady{Client: c.Client}
	analysis := deploy.AnalysisFunc(func(ctx context.Context, s deploy.Step) error {
		cd := getDeployment(t, c, s.Namespace, s.Canary)
		sd := getDeployment(t, c, s.Namespace, s.Stable)
		seen = append(seen, counts{int32(s.Percent), *cd.Spec.Replicas, *sd.Spec.Replicas, cd.Status.ReadyReplicas, sd.Status.ReadyReplicas})
		if img := cd.Spec.Template.Spec.Containers[0].Image; img != image("2.0.0") {
			t.Errorf("canary image %s at %d%%", img, s.Percent)
		}
		if img := sd.Spec.Template.Spec.Containers[0].Image; img != image("1.0.0") {
			t.Errorf("stable image %s at %d%%", img, s.Percent)
		}
		return podsReady.Analyze(ctx, s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := tg.Deploy(ctx, deploy.Input{Config: cfg, Release: rel("2.0.0"), Namespace: ns, InsecureSkipVerify: true, Analysis: analysis})
	if err != nil {
		t.Fatal(err)
	}
	want := []counts{{10, 1, 3, 1, 3}, {50, 2, 2, 2, 2}}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("steps (percent, canary, stable, ready canary, ready stable) %v; want %v", seen, want)
	}
	if rep.Current.Strategy != deploy.Canary {
		t.Errorf("recorded strategy %s", rep.Current.Strategy)
	}
	assertServing(t, c, ns, "2.0.0", 4)
	if _, err := c.Client.AppsV1().Deployments(ns).Get(context.Background(), "diabetes-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary deployment after 100%%: %v; want it removed", err)
	}
}

func TestCanaryAnalysisFailureAborts(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := testConfig()
	cfg.Replicas = 4
	deployOK(t, tg, ns, cfg, rel("1.0.0"))

	cfg.Strategy = deploy.Canary
	cfg.Steps = []int{25, 50, 100}
	failAt50 := deploy.AnalysisFunc(func(ctx context.Context, s deploy.Step) error {
		if s.Percent == 50 {
			return fmt.Errorf("error rate 12%% above 1%%: %w", deploy.ErrAnalysisFailed)
		}
		return nil
	})
	stop := minAvailable(t, c, ns, "diabetes")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := tg.Deploy(ctx, deploy.Input{Config: cfg, Release: rel("2.0.0"), Namespace: ns, InsecureSkipVerify: true, Analysis: failAt50})
	stop()
	if !errors.Is(err, deploy.ErrAnalysisFailed) || !errors.Is(err, deploy.ErrRolledBack) {
		t.Fatalf("deploy: %v; want ErrAnalysisFailed and ErrRolledBack", err)
	}
	if rep.Result != deploy.ResultAborted || rep.Current.Version != "1.0.0" {
		t.Errorf("report: result %s, current %+v", rep.Result, rep.Current)
	}
	// Stable keeps its image and is back at full size; the canary is gone.
	assertServing(t, c, ns, "1.0.0", 4)
	if gen := getDeployment(t, c, ns, "diabetes").Status.ObservedGeneration; gen == 0 {
		t.Error("stable not observed")
	}
	if d, err := c.Client.AppsV1().Deployments(ns).Get(context.Background(), "diabetes-canary", metav1.GetOptions{}); err == nil && *d.Spec.Replicas != 0 {
		t.Errorf("canary still has %d replicas", *d.Spec.Replicas)
	}
	h, err := tg.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(h.History); !strings.HasPrefix(got, "1.0.0:deploy:deployed 2.0.0:deploy:aborted") {
		t.Errorf("history %s", got)
	}
}

func TestRollbackTo(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := testConfig()
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		deployOK(t, tg, ns, cfg, rel(v))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := tg.Rollback(ctx, deploy.RollbackInput{Name: "diabetes", Namespace: ns, To: "1.0.0", Reason: "bad predictions", Who: "oncall", Trust: insecure})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Current.Version != "1.0.0" || rep.Current.Action != deploy.ActionRollback || rep.Current.Reason != "bad predictions" || rep.Current.Who != "oncall" || rep.Previous.Version != "1.2.0" {
		t.Errorf("rollback report: current %+v, previous %+v", rep.Current, rep.Previous)
	}
	assertServing(t, c, ns, "1.0.0", 3)

	// Without --to: the release before the current one.
	rep, err = tg.Rollback(ctx, deploy.RollbackInput{Name: "diabetes", Namespace: ns, Trust: insecure})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Current.Version != "1.2.0" {
		t.Errorf("rollback without --to went to %s; want 1.2.0", rep.Current.Version)
	}
	assertServing(t, c, ns, "1.2.0", 3)

	if _, err := tg.Rollback(ctx, deploy.RollbackInput{Name: "diabetes", Namespace: ns, To: "9.9.9", Trust: insecure}); !errors.Is(err, deploy.ErrVersionNotFound) {
		t.Errorf("rollback to an unknown version: %v; want ErrVersionNotFound", err)
	}
	if _, err := tg.Rollback(ctx, deploy.RollbackInput{Name: "other", Namespace: ns, Trust: insecure}); !errors.Is(err, deploy.ErrNoRelease) {
		t.Errorf("rollback of an unknown app: %v; want ErrNoRelease", err)
	}
}

func TestConcurrentWritersConflict(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	first, second := target(t, c), target(t, c)
	cfg := testConfig()
	deployOK(t, first, ns, cfg, rel("1.0.0"))
	before, err := first.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}

	// The first writer holds the lease while its canary analysis runs; the second writer
	// arrives then, deterministically.
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := deploy.AnalysisFunc(func(ctx context.Context, s deploy.Step) error {
		once.Do(func() { close(inside) })
		<-release
		return nil
	})
	canary := cfg
	canary.Strategy, canary.Steps = deploy.Canary, []int{50, 100}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	firstErr := make(chan error, 1)
	go func() {
		_, err := first.Deploy(ctx, deploy.Input{Config: canary, Release: rel("2.0.0"), Namespace: ns, InsecureSkipVerify: true, Analysis: hold})
		firstErr <- err
	}()
	select {
	case <-inside:
	case err := <-firstErr:
		t.Fatalf("first deploy ended before its analysis: %v", err)
	}
	stable := getDeployment(t, c, ns, "diabetes")
	canaryDep := getDeployment(t, c, ns, "diabetes-canary")

	_, err = second.Deploy(ctx, deploy.Input{Config: cfg, Release: rel("3.0.0"), Namespace: ns, InsecureSkipVerify: true})
	if !errors.Is(err, deploy.ErrConflict) {
		t.Errorf("second deploy: %v; want ErrConflict", err)
	}
	if _, err := second.Rollback(ctx, deploy.RollbackInput{Name: "diabetes", Namespace: ns, Trust: insecure}); !errors.Is(err, deploy.ErrConflict) {
		t.Errorf("rollback during a deploy: %v; want ErrConflict", err)
	}
	// Nothing of the second writer reached the cluster. The generation counts
	// changes of the spec, which a writer makes; the controller keeps
	// writing the status (pods still terminating), so the resourceVersion
	// may move.
	if d := getDeployment(t, c, ns, "diabetes"); d.Generation != stable.Generation || !reflect.DeepEqual(d.Annotations, stable.Annotations) {
		t.Errorf("stable deployment changed during the conflict (generation %d → %d, annotations %v → %v)", stable.Generation, d.Generation, stable.Annotations, d.Annotations)
	}
	if d := getDeployment(t, c, ns, "diabetes-canary"); d.Generation != canaryDep.Generation || !reflect.DeepEqual(d.Annotations, canaryDep.Annotations) {
		t.Errorf("canary deployment changed during the conflict (generation %d → %d)", canaryDep.Generation, d.Generation)
	}
	mid, err := second.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if versions(mid.History) != versions(before.History) {
		t.Errorf("history changed during the conflict: %s", versions(mid.History))
	}

	close(release)
	if err := <-firstErr; err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	assertServing(t, c, ns, "2.0.0", 3)
	// The lease is released: the second writer may go now.
	deployOK(t, second, ns, cfg, rel("3.0.0"))
}

// verifier is a deploy.Verifier with a fixed answer (stages/sign provides the real one; its
// own tests cover signatures).
type verifier struct {
	v   deploy.Verification
	err error
}

func (f verifier) Verify(context.Context, string) (deploy.Verification, error) { return f.v, f.err }

func TestVerification(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	ctx := context.Background()
	r := rel("1.0.0")
	r.Name, r.Version = "", ""

	_, err := tg.Deploy(ctx, deploy.Input{Config: testConfig(), Release: r, Namespace: ns, Verifier: verifier{err: errors.New("no signature")}})
	if !errors.Is(err, deploy.ErrNotVerified) {
		t.Errorf("unverified image: %v; want ErrNotVerified", err)
	}
	_, err = tg.Deploy(ctx, deploy.Input{Config: testConfig(), Release: rel("1.0.0"), Namespace: ns})
	if !errors.Is(err, deploy.ErrNoVerifier) {
		t.Errorf("no verifier: %v; want ErrNoVerifier", err)
	}
	if cms, _ := c.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: deploy.LabelManagedBy + "=modelci"}); len(cms.Items) != 0 {
		t.Errorf("refused deploys wrote %d history objects", len(cms.Items))
	}

	rep, err := tg.Deploy(ctx, deploy.Input{Config: testConfig(), Release: r, Namespace: ns, Verifier: verifier{v: deploy.Verification{Verdict: "PASS", Name: "diabetes", Version: "1.0.0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Current.Verdict != "PASS" || rep.Name != "diabetes" || rep.Current.Version != "1.0.0" {
		t.Errorf("verified deploy: name %s, current %+v", rep.Name, rep.Current)
	}
}

func TestNamespace(t *testing.T) {
	c := k8stest.Start(t)
	tg := target(t, c)
	ctx := context.Background()
	ns := "missing-" + strings.ToLower(hex.EncodeToString([]byte(t.Name()))[:8])
	_, err := tg.Deploy(ctx, deploy.Input{Config: testConfig(), Release: rel("1.0.0"), Namespace: ns, InsecureSkipVerify: true})
	if !errors.Is(err, deploy.ErrNamespaceNotFound) {
		t.Fatalf("missing namespace: %v; want ErrNamespaceNotFound", err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	if _, err := tg.Deploy(ctx, deploy.Input{Config: testConfig(), Release: rel("1.0.0"), Namespace: ns, InsecureSkipVerify: true, CreateNamespace: true}); err != nil {
		t.Fatalf("with CreateNamespace: %v", err)
	}
	assertServing(t, c, ns, "1.0.0", 3)
}

func TestForbidden(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg, err := deploy.NewTarget(c.KubeconfigAs(t, "nobody"), k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tg.Deploy(context.Background(), deploy.Input{Config: testConfig(), Release: rel("1.0.0"), Namespace: ns, InsecureSkipVerify: true})
	if !errors.Is(err, deploy.ErrForbidden) {
		t.Errorf("deploy without rights: %v; want ErrForbidden", err)
	}
	if _, err := tg.Status(context.Background(), "diabetes", ns); !errors.Is(err, deploy.ErrForbidden) {
		t.Errorf("status without rights: %v; want ErrForbidden", err)
	}
}

// The tests below need no cluster.

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	tg, err := deploy.NewTargetForConfig(&rest.Config{Host: "https://" + addr, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tg.Deploy(context.Background(), deploy.Input{Config: testConfig(), Release: rel("1.0.0"), Namespace: "models", InsecureSkipVerify: true})
	if !errors.Is(err, deploy.ErrUnreachable) {
		t.Errorf("deploy to a closed port: %v; want ErrUnreachable", err)
	}
}

func TestNewTargetContext(t *testing.T) {
	path := t.TempDir() + "/kubeconfig"
	kc := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: staging\n  context: {cluster: c, user: u}\n"
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := deploy.NewTarget(path, "production"); !errors.Is(err, deploy.ErrContext) {
		t.Errorf("unknown context: %v; want ErrContext", err)
	}
	if _, err := deploy.NewTarget(path, ""); !errors.Is(err, deploy.ErrContext) {
		t.Errorf("no current context: %v; want ErrContext", err)
	}
	tg, err := deploy.NewTarget(path, "staging")
	if err != nil || tg.Context != "staging" {
		t.Errorf("named context: %v, %v", tg, err)
	}
}

func TestDeployRefusesBadInputBeforeConnecting(t *testing.T) {
	// The target points nowhere: each input must be refused before any request.
	tg, err := deploy.NewTargetForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tg.Log = io.Discard
	tag := rel("1.0.0")
	tag.Image = "registry.test/models/diabetes:1.0.0"
	steps := testConfig()
	steps.Strategy, steps.Steps = deploy.Canary, []int{50, 20}
	tests := []struct {
		name string
		in   deploy.Input
		err  error
	}{
		{"tag", deploy.Input{Config: testConfig(), Release: tag, InsecureSkipVerify: true}, deploy.ErrNotDigest},
		{"steps", deploy.Input{Config: steps, Release: rel("1.0.0"), InsecureSkipVerify: true}, deploy.ErrInvalidSteps},
		{"name", deploy.Input{Config: testConfig(), Release: deploy.Release{Name: "Bad_Name", Version: "1", Image: image("1")}, InsecureSkipVerify: true}, deploy.ErrInvalidConfig},
	}
	for _, tt := range tests {
		if _, err := tg.Deploy(context.Background(), tt.in); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.err)
		}
	}
}
