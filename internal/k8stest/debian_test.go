package k8stest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/modelci/modelci/internal/k8stest"
)

// TestDebianImage: a Debian image built here runs python3 in a pod, and asking for it again
// builds nothing: the cache has it, and the registry the same image.
func TestDebianImage(t *testing.T) {
	n := k8stest.StartNode(t)
	ns := n.Namespace(t)
	img := k8stest.DebianImage(t, n, "python3-minimal")
	builds := k8stest.DebianBuilds()
	if again := k8stest.DebianImage(t, n, "python3-minimal"); again != img || k8stest.DebianBuilds() != builds {
		t.Errorf("second DebianImage: %s after %d builds; want %s from the cache (%d builds)", again, k8stest.DebianBuilds(), img, builds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, logs := runPod(ctx, t, n, ns, corev1.Container{Name: "c", Image: img, Command: []string{"python3", "--version"}})
	if !strings.HasPrefix(logs, "Python 3.11.") {
		t.Errorf("python3 --version in the pod: %q; want Python 3.11.*", logs)
	}
}
