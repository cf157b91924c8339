package k8stest_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/modelci/modelci/internal/k8stest"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

func pod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			Containers:                   []corev1.Container{{Name: "c", Image: "registry.test/x@sha256:0000000000000000000000000000000000000000000000000000000000000000"}},
		},
	}
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestPodStages checks kwok's stages: a plain pod becomes Ready; a pod annotated
// NeverReadyAnnotation runs, gets an IP, and stays unready.
func TestPodStages(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods := c.Client.CoreV1().Pods(ns)
	w, err := pods.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := pods.Create(ctx, pod("good", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, pod("broken", map[string]string{k8stest.NeverReadyAnnotation: "true"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var good, broken *corev1.Pod
	for good == nil || broken == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("pods did not start: good %v, broken %v", good != nil, broken != nil)
		case ev := <-w.ResultChan():
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			switch p.Name {
			case "good":
				good = p
			case "broken":
				broken = p
			}
		}
	}
	if !ready(good) || good.Spec.NodeName == "" || good.Status.PodIP == "" {
		t.Errorf("good pod: ready %v, node %q, ip %q", ready(good), good.Spec.NodeName, good.Status.PodIP)
	}
	if ready(broken) || broken.Status.PodIP == "" {
		t.Errorf("broken pod: ready %v, ip %q; want running, unready", ready(broken), broken.Status.PodIP)
	}
}

func TestKubeconfigAsIsRestricted(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	out, err := c.Kubectl(context.Background(), "--kubeconfig", c.KubeconfigAs(t, "nobody"), "-n", ns, "get", "pods").CombinedOutput()
	if err == nil {
		t.Errorf("an unprivileged user listed pods:\n%s", out)
	}
	out, err = c.Kubectl(context.Background(), "-n", ns, "get", "pods").CombinedOutput()
	if err != nil {
		t.Errorf("admin: %v\n%s", err, out)
	}
}
