package deploy_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/stages/deploy"
)

// BenchmarkRollout measures deploy-to-rolled-out time of one image change made by modelci
// (Lease, server-side apply of every object, the watch, the history record) against the same
// change made with `kubectl set image` and waited for with `kubectl rollout status`, on the
// same cluster. The two alternate within each iteration, each on its own 3-replica
// Deployment, so that both see the same load; the metrics are seconds per change of each and
// their ratio (modelci/kubectl: above 1 is modelci's overhead).
func BenchmarkRollout(b *testing.B) {
	c := k8stest.Start(b)
	ctx := context.Background()
	cfg := deploy.Defaults()
	cfg.Replicas = 3
	tg, err := deploy.NewTarget(c.Kubeconfig, k8stest.Context)
	if err != nil {
		b.Fatal(err)
	}
	tg.Log = io.Discard
	nsModelci, nsKubectl := c.Namespace(b), c.Namespace(b)
	for _, ns := range []string{nsModelci, nsKubectl} {
		if _, err := tg.Deploy(ctx, deploy.Input{Config: cfg, Release: rel("0.0.0"), Namespace: ns, InsecureSkipVerify: true}); err != nil {
			b.Fatal(err)
		}
	}
	var modelci, kubectl time.Duration
	b.ResetTimer()
	for i := range b.N {
		version := fmt.Sprintf("1.0.%d", i)

		start := time.Now()
		if _, err := tg.Deploy(ctx, deploy.Input{Config: cfg, Release: rel(version), Namespace: nsModelci, InsecureSkipVerify: true}); err != nil {
			b.Fatal(err)
		}
		modelci += time.Since(start)

		start = time.Now()
		if out, err := c.Kubectl(ctx, "-n", nsKubectl, "set", "image", "deployment/diabetes", "model="+image(version)).CombinedOutput(); err != nil {
			b.Fatalf("kubectl set image: %v\n%s", err, out)
		}
		if out, err := c.Kubectl(ctx, "-n", nsKubectl, "rollout", "status", "deployment/diabetes", "--timeout=2m").CombinedOutput(); err != nil {
			b.Fatalf("kubectl rollout status: %v\n%s", err, out)
		}
		kubectl += time.Since(start)
	}
	b.ReportMetric(modelci.Seconds()/float64(b.N), "modelci-s/change")
	b.ReportMetric(kubectl.Seconds()/float64(b.N), "kubectl-s/change")
	b.ReportMetric(modelci.Seconds()/kubectl.Seconds(), "overhead-ratio")
}
