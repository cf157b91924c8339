package k8stest_test

import (
	"archive/tar"
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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

// TestNodePodRegistry: an image pushed to the pod registry runs in a pod on the bridge, pulled by
// that name, and reaches the pod registry from there; the loopback registry serves the same
// image.
func TestNodePodRegistry(t *testing.T) {
	n := k8stest.StartNode(t)
	if n.PodRegistry == "" {
		t.Fatal("the node has no pod registry")
	}
	ns := n.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := http.Get("http://" + n.PodRegistry + "/v2/")
	if err != nil {
		t.Fatalf("the host reaches the pod registry: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET http://%s/v2/ from the host: %s", n.PodRegistry, resp.Status)
	}
	img := pushBinary(ctx, t, "./testdata/httpget", n.PodRegistry+"/"+ns+"/httpget:1")
	digest := img[strings.LastIndex(img, "@")+1:]
	loopback, err := name.ParseReference(n.Registry+"/"+ns+"/httpget@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(loopback, remote.WithContext(ctx)); err != nil {
		t.Errorf("the loopback registry lacks what the pod registry got: %v", err)
	}
	p, logs := runPod(ctx, t, n, ns, corev1.Container{Name: "c", Image: img, Args: []string{"http://" + n.PodRegistry + "/v2/"}})
	if st := p.Status.ContainerStatuses; len(st) != 1 || !strings.HasSuffix(st[0].ImageID, digest) {
		t.Errorf("container statuses %+v; want image %s", st, digest)
	}
	var onBridge bool
	for _, line := range strings.Split(logs, "\n") {
		if a, ok := strings.CutPrefix(line, "addr "); ok {
			ip, err := netip.ParseAddr(a)
			onBridge = onBridge || err == nil && n.Subnet.Contains(ip)
		}
	}
	if !onBridge || !strings.Contains(logs, "status HTTP/1.0 200 OK") {
		t.Errorf("pod's output:\n%s\nwant an address in %s and status 200 from the pod registry", logs, n.Subnet)
	}
}

// pushBinary builds the Go program pkg, static, packs it as a one-layer image whose entrypoint
// it is, pushes it as ref and returns the image's reference by digest.
func pushBinary(ctx context.Context, t *testing.T, pkg, ref string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v: %s", pkg, err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "bin", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH, OS: "linux",
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{must(layer.DiffID())}},
		Config: v1.Config{Entrypoint: []string{"/bin"}, User: "65534:65534"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", r, err)
	}
	return r.Context().Name() + "@" + must(img.Digest()).String()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// runPod runs a pod of container c on the bridge network until it ends, and returns it with
// its logs; it fails t unless the pod succeeded.
func runPod(ctx context.Context, t *testing.T, n *k8stest.Node, ns string, c corev1.Container) (*corev1.Pod, string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "run-"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			RestartPolicy:                corev1.RestartPolicyNever,
			Containers:                   []corev1.Container{c},
		},
	}
	p, err := n.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s did not end: %v (phase %s, %+v)", p.Name, ctx.Err(), p.Status.Phase, p.Status.ContainerStatuses)
		case <-tick.C:
		}
		if p, err = n.Client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	logs, err := n.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of pod %s: %v", p.Name, err)
	}
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod %s %s: %+v\n%s", p.Name, p.Status.Phase, p.Status.ContainerStatuses, logs)
	}
	return p, string(logs)
}
