package k8stest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs installs the CustomResourceDefinitions at paths inside the Go module
// module@version (fetched through the Go module proxy, as `go mod download` does: the CRDs a
// project publishes with its API types), and waits until the API server serves them. Installed
// CRDs stay for the control plane's life; installing them again is a no-op.
func (c *Cluster) InstallCRDs(t testing.TB, module string, paths ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", module).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go mod download %s: %v: %s%s", module, err, out, stderr)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", module, err, mod.Error)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(crdResource)
	var names []string
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(mod.Dir, p))
		if err != nil {
			t.Fatalf("%s: %v", module, err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s %s: %v", module, p, err)
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := crds.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create CRD %s: %v", u.GetName(), err)
			}
			names = append(names, u.GetName())
		}
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := waitEstablished(ctx, crds, name); err != nil {
			t.Fatalf("CRD %s: %v", name, err)
		}
	}
	// Discovery lags Established a little: its cache is refreshed by the aggregator.
	for _, name := range names {
		u, err := crds.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(u.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
		for _, v := range versions {
			version, _, _ := unstructured.NestedString(v.(map[string]any), "name")
			if err := waitDiscovered(ctx, disc, group+"/"+version, plural); err != nil {
				t.Fatalf("CRD %s: %v", name, err)
			}
		}
	}
}

// waitEstablished watches a CRD until its Established condition is True.
func waitEstablished(ctx context.Context, crds dynamic.NamespaceableResourceInterface, name string) error {
	established := func(u *unstructured.Unstructured) bool {
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	}
	for {
		u, err := crds.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if established(u) {
			return nil
		}
		w, err := crds.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: u.GetResourceVersion()})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			if u, ok := ev.Object.(*unstructured.Unstructured); ok && established(u) {
				w.Stop()
				return nil
			}
		}
		w.Stop()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("not established: %w", err)
		}
	}
}

// waitDiscovered asks discovery until it lists the resource: discovery has no watch.
func waitDiscovered(ctx context.Context, d discovery.DiscoveryInterface, gv, plural string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if list, err := d.ServerResourcesForGroupVersion(gv); err == nil {
			for _, r := range list.APIResources {
				if r.Name == plural {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s not in discovery: %w", gv, plural, ctx.Err())
		case <-tick.C:
		}
	}
}
