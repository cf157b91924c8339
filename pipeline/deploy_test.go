package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// TestRunRendersManifests: a deploy: section that is not enabled renders
// the manifests into the run directory, by digest.
func TestRunRendersManifests(t *testing.T) {
	reg := newCountingRegistry(t)
	dir := project(t, func(s string) string { return s + "deploy:\n  namespace: models\n  replicas: 2\n" })
	res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(reg.repo()))
	if err != nil {
		t.Fatal(err)
	}
	d := res.Record.Outputs.Deploy
	if d == nil || d.Rendered == 0 || d.Namespace != "models" {
		t.Fatalf("record deploy = %+v", d)
	}
	entries, err := os.ReadDir(filepath.Join(res.RunDir, "deploy"))
	if err != nil || len(entries) != d.Rendered {
		t.Fatalf("deploy/ holds %d files (%v), record says %d", len(entries), err, d.Rendered)
	}
	var found bool
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(res.RunDir, "deploy", e.Name()))
		found = found || strings.Contains(string(b), "image: "+res.Ref)
	}
	if !found {
		t.Fatalf("no manifest names the image %s by digest", res.Ref)
	}
}

// TestRunDeploys: deploy.enabled signs, verifies and rolls the pushed image
// out on the real control plane.
func TestRunDeploys(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	reg := newCountingRegistry(t)
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t, func(s string) string {
		return s + "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n" +
			"deploy:\n  enabled: true\n  context: " + k8stest.Context + "\n  namespace: " + ns + "\n  replicas: 2\n"
	})
	os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644)
	t.Setenv("MODELCI_KEY_PASSWORD", "pw")

	res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)),
		pipeline.WithRepository(reg.repo()), pipeline.WithKubeconfig(c.Kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Record.Outputs.Deploy; d == nil || d.Namespace != ns || d.Context != k8stest.Context {
		t.Fatalf("record deploy = %+v", d)
	}
	dep, err := c.Client.AppsV1().Deployments(ns).Get(context.Background(), deploy.WorkloadName("diabetes", "predict"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != res.Ref {
		t.Fatalf("deployment image %s, want %s", img, res.Ref)
	}
	// model_source image (the default): the model is in the image, no volume.
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Name == deploy.ModelVolume || v.Image != nil {
			t.Errorf("model_source image mounts the volume %s (image %+v)", v.Name, v.Image)
		}
	}
	if dep.Status.AvailableReplicas != 2 {
		t.Fatalf("available replicas %d, want 2", dep.Status.AvailableReplicas)
	}
}
