package k8stest_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/modelci/modelci/internal/k8stest"
)

// TestNodeRunsPods: pods of the node's own sandbox image really run, two at once, each with an
// address on the node's bridge network.
func TestNodeRunsPods(t *testing.T) {
	n := k8stest.StartNode(t)
	ns := n.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := n.Registry + "/pause:1"
	seen := map[netip.Addr]bool{}
	for _, name := range []string{"a", "b"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: new(bool),
				Containers:                   []corev1.Container{{Name: "c", Image: img}},
			},
		}
		created, err := n.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := n.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: created.ResourceVersion,
		})
		if err != nil {
			t.Fatal(err)
		}
		for p = created; p.Status.Phase != corev1.PodRunning || !ready(p); {
			ev, ok := <-w.ResultChan()
			if !ok {
				t.Fatalf("pod %s never ran: %v (phase %s)", name, ctx.Err(), p.Status.Phase)
			}
			if np, isPod := ev.Object.(*corev1.Pod); isPod {
				p = np
			}
		}
		w.Stop()
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !n.Subnet.Contains(ip) || seen[ip] {
			t.Fatalf("pod %s: IP %q (%v); want a new address in %s", name, p.Status.PodIP, err, n.Subnet)
		}
		seen[ip] = true
		if p.Spec.NodeName != k8stest.NodeName {
			t.Errorf("pod %s ran on %q; want %s", name, p.Spec.NodeName, k8stest.NodeName)
		}
	}
}
