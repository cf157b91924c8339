// Package e2e drives the modelci Dagger module (ci/) through a real engine
// with the dagger CLI. It lives in modelci's module, not the Dagger
// module's: the Dagger module imports none of modelci's packages, and these
// tests compare what it does with modelci's own run.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

// The deploy and promote tests share one control plane (MODELCI_K8S_BIN).
func TestMain(m *testing.M) { k8stest.Main(m) }

// moduleFiles reads the Dagger module's files (dagger.json and ci/), so that
// go's test cache, which tracks the files a test opens, reruns these tests
// when the module changes; modelci's own packages are imports already. It
// returns their digest, for messages.
func moduleFiles(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	h := sha256.New()
	files := []string{filepath.Join(root, "dagger.json")}
	err := filepath.WalkDir(filepath.Join(root, "ci"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// binary is modelci (cmd/modelci) built from this source for the module's
// steps, with the flags the module builds it with, once per test binary
// (Go's build cache makes later builds quick): the engine then compiles
// nothing but the module. The module's own build of it uses the builder
// and flags that TestRuntimeBinary checks against the host's bytes.
func binary(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "modelci-e2e-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "modelci")
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", cliBin, "./cmd/modelci")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatalf("build modelci: %v", cliErr)
	}
	return cliBin
}

// runtimeBinary is the image's server as `modelci run` builds it (the same
// cache, by source digest), passed to the module so that both build the
// same image.
func runtimeBinary(t *testing.T) string {
	t.Helper()
	bin, err := image.Runtime(context.Background(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(repoRoot(t)))
	if err != nil {
		t.Fatalf("build modelci-serve: %v", err)
	}
	return bin
}

// These tests drive a real Dagger engine with the dagger CLI. tools/dagger/engine.sh
// start prints the variables they need; .ci/run sets them.
const linregSpec = "examples/linreg/modelci.yaml"

func daggerCLI(t *testing.T) string {
	t.Helper()
	cli := os.Getenv("MODELCI_DAGGER_CLI")
	if os.Getenv("MODELCI_DAGGER_ENGINE") == "" || cli == "" || os.Getenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST") == "" {
		t.Skip("no Dagger engine: start one with `eval \"$(sudo tools/dagger/engine.sh start)\"` (sets MODELCI_DAGGER_ENGINE, MODELCI_DAGGER_CLI, _EXPERIMENTAL_DAGGER_RUNNER_HOST)")
	}
	return cli
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// call runs `dagger call --modelci-binary BIN --modelci-runtime BIN ARGS…` on the module at the
// repository root and returns its stdout.
func call(t *testing.T, args ...string) string {
	t.Helper()
	return dagger(t, append([]string{"call", "--modelci-binary", binary(t), "--modelci-runtime", runtimeBinary(t)}, args...)...)
}

// dagger runs the dagger CLI on the module at the repository root.
func dagger(t *testing.T, args ...string) string {
	t.Helper()
	out, err := daggerRun(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// callErr is call for a call that may fail: its error carries the end of
// the CLI's stderr.
func callErr(t *testing.T, args ...string) error {
	t.Helper()
	_, err := daggerRun(t, append([]string{"call", "--modelci-binary", binary(t), "--modelci-runtime", runtimeBinary(t)}, args...)...)
	return err
}

func daggerRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cli := daggerCLI(t)
	moduleFiles(t)
	cmd := exec.Command(cli, append([]string{"--progress=plain", "-m", repoRoot(t)}, args...)...)
	cmd.Dir = repoRoot(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tail := stderr.String()
		if len(tail) > 6000 {
			tail = tail[len(tail)-6000:]
		}
		return "", fmt.Errorf("dagger %s: %w\n%s", strings.Join(args, " "), err, tail)
	}
	return stdout.String(), nil
}

// localRun is `modelci run` on the same example, in process, into a
// temporary output directory.
func localRun(t *testing.T) *pipeline.Result {
	t.Helper()
	sp, err := spec.Load(filepath.Join(repoRoot(t), linregSpec))
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Run(context.Background(), sp,
		pipeline.WithOutput(t.TempDir()), pipeline.WithCreated(time.Unix(0, 0).UTC()))
	if err != nil {
		t.Fatalf("modelci run: %v", err)
	}
	return res
}

func TestFunctions(t *testing.T) {
	daggerCLI(t)
	local := localRun(t)
	localMetrics, err := os.ReadFile(filepath.Join(local.RunDir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	metricsPath := filepath.Join(t.TempDir(), "metrics.json")
	if err := os.WriteFile(metricsPath, localMetrics, 0o644); err != nil {
		t.Fatal(err)
	}
	localModel, err := os.ReadFile(filepath.Join(local.RunDir, "model", "model.json"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"train", []string{"train", "--spec", linregSpec, "file", "--path", "model/model.json", "contents"},
			func(t *testing.T, out string) {
				if out != string(localModel) {
					t.Errorf("model.json differs from modelci run's:\n%s\nwant\n%s", out, localModel)
				}
			}},
		{"evaluate", []string{"evaluate", "--spec", linregSpec, "contents"},
			func(t *testing.T, out string) {
				if out != string(localMetrics) {
					t.Errorf("metrics.json differs from modelci run's:\n%.400s\nwant\n%.400s", out, localMetrics)
				}
			}},
		{"gate", []string{"gate", "--metrics", metricsPath, "--spec", linregSpec, "verdict"},
			func(t *testing.T, out string) {
				if got := strings.TrimSpace(out); got != string(local.Verdict) {
					t.Errorf("verdict %q, want %q", got, local.Verdict)
				}
			}},
		{"gate report", []string{"gate", "--metrics", metricsPath, "--spec", linregSpec, "report"},
			func(t *testing.T, out string) {
				if want := local.Report.Markdown(); strings.TrimSpace(out) != strings.TrimSpace(want) {
					t.Errorf("report differs from modelci's:\n%s\nwant\n%s", out, want)
				}
			}},
		{"gate json", []string{"gate", "--metrics", metricsPath, "--spec", linregSpec, "json"},
			func(t *testing.T, out string) {
				checkDocument(t, out, modelgate.ReportSchema)
				// The reusable workflow's gate step reads these with jq.
				reads := workflowReads(t, "modelci.yml", `"$out/gate.json"`, out)
				if reads[".verdict"] != string(local.Verdict) {
					t.Errorf("modelci.yml reads verdict %q, want %q", reads[".verdict"], local.Verdict)
				}
				if reads[".on_inconclusive"] != local.Report.OnInconclusive {
					t.Errorf("modelci.yml reads on_inconclusive %q, want %q", reads[".on_inconclusive"], local.Report.OnInconclusive)
				}
			}},
		{"build", []string{"build", "--spec", linregSpec, "file", "--path", "/model/model.json", "contents"},
			func(t *testing.T, out string) {
				if out != string(localModel) {
					t.Errorf("the image's /model/model.json differs from modelci run's")
				}
			}},
		{"test", []string{"test", "--pkg", "./modelgate", "--run", "TestParseVersion|TestTag"},
			func(t *testing.T, out string) {
				if !strings.Contains(out, "ok  \tgithub.com/modelci/modelci/modelgate") {
					t.Errorf("go test output lacks ok for ./modelgate:\n%s", out)
				}
			}},
		{"doctor", []string{"doctor"},
			func(t *testing.T, out string) {
				// Without a GPU the engine refuses GPUs; with one every check says ok.
				if !strings.Contains(out, "_EXPERIMENTAL_DAGGER_GPU_SUPPORT") {
					t.Errorf("doctor does not mention the engine flag:\n%s", out)
				}
				if strings.Contains(out, "PROBLEM") && !strings.Contains(out, "fix: ") {
					t.Errorf("doctor names a problem without its fix:\n%s", out)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, call(t, tt.args...))
		})
	}
}

// TestRuntimeBinary: without --modelci-runtime the module builds the
// image's server in the engine, with the builder it builds every binary
// with (modelci too, without --modelci-binary), and the bytes equal the
// host's build of the same source with the same toolchain and flags, so a
// user with no prebuilt binaries gets the same image digests. (The server,
// not the whole CLI: the same builder and flags at a seventh of the size,
// so that a warm run after a change stays short.)
func TestRuntimeBinary(t *testing.T) {
	daggerCLI(t)
	out := filepath.Join(t.TempDir(), "modelci-serve")
	dagger(t, "call", "runtime-bin", "export", "--path", out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(runtimeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Errorf("the module's modelci-serve (%d bytes) differs from the host's build (%d bytes)", len(got), len(want))
	}
}

// serveRegistry starts modelci's embedded registry on a loopback port.
func serveRegistry(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- registry.Serve(ctx, "127.0.0.1:0", t.TempDir(), registry.OnListen(func(a net.Addr) { addrc <- a }))
	}()
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	select {
	case a := <-addrc:
		return a.String()
	case err := <-errc:
		t.Fatalf("registry: %v", err)
	}
	return ""
}

// TestRelease releases the example into a staging repository of the
// embedded registry, then deploys it to a namespace of the test control
// plane and promotes it to a prod repository and namespace, each with one
// `dagger call` through the module's registry and API server tunnels.
func TestRelease(t *testing.T) {
	daggerCLI(t)
	local := localRun(t)
	addr := serveRegistry(t)

	dir := t.TempDir()
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	for path, b := range map[string][]byte{keyPath: priv, pubPath: pub} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MODELCI_TEST_KEY_PASSWORD", "pw")

	staging, prod := addr+"/staging/diabetes", addr+"/prod/diabetes"
	root := repoRoot(t)
	srcURI, srcRev := pipeline.SourceRevision(filepath.Join(root, filepath.Dir(linregSpec)))
	out := call(t, "release", "--spec", linregSpec,
		"--address", staging, "--registry", "tcp://"+addr,
		"--key", "file:"+keyPath, "--key-password", "env:MODELCI_TEST_KEY_PASSWORD",
		"--source-uri", srcURI, "--source-revision", srcRev, "json")
	var rel struct {
		Verdict     string `json:"verdict"`
		Version     string `json:"version"`
		Digest      string `json:"digest"`
		Ref         string `json:"ref"`
		ModelDigest string `json:"model_digest"`
		Signature   string `json:"signature"`
		Summary     string `json:"summary"`
		ExitCode    int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("release output %q: %v", out, err)
	}
	// The reusable workflow's release job reads the result with jq, which
	// is case-sensitive: its own filters, run on the module's document,
	// read what Go decoded.
	checkDocument(t, out, "modelci.dev/dagger-release/v1")
	reads := workflowReads(t, "modelci.yml", `"$r"`, out)
	for key, want := range map[string]string{
		".summary": rel.Summary, "verdict": rel.Verdict, ".verdict": rel.Verdict,
		"version": rel.Version, "digest": rel.Digest, "ref": rel.Ref, ".ref": rel.Ref,
		"signature": rel.Signature, ".exit_code": fmt.Sprint(rel.ExitCode),
	} {
		if got, ok := reads[key]; !ok || got != want {
			t.Errorf("modelci.yml's jq reads %s as %q (read: %v), want %q", key, got, ok, want)
		}
	}

	if rel.Verdict != string(modelgate.Pass) || rel.ExitCode != 0 {
		t.Errorf("verdict %s (exit %d), want PASS (0)", rel.Verdict, rel.ExitCode)
	}
	if rel.ModelDigest != local.Record.Outputs.Model.Digest {
		t.Errorf("model digest %s, modelci run's %s", rel.ModelDigest, local.Record.Outputs.Model.Digest)
	}
	if rel.Digest != local.Record.Outputs.Image.Digest {
		t.Errorf("image digest %s, modelci run's %s", rel.Digest, local.Record.Outputs.Image.Digest)
	}
	if want := staging + "@" + rel.Digest; rel.Ref != want {
		t.Fatalf("ref %s, want %s", rel.Ref, want)
	}
	if !strings.Contains(rel.Summary, "PASS") || !strings.Contains(rel.Summary, rel.Digest) {
		t.Errorf("summary lacks the verdict or the digest:\n%s", rel.Summary)
	}
	// The signature tag names the registry as the caller does.
	if !strings.HasPrefix(rel.Signature, staging+":sha256-") {
		t.Errorf("signature %s, want %s:sha256-….sig", rel.Signature, staging)
	}

	// The registry holds the version tag at that digest, signed with the key.
	ctx := context.Background()
	got, err := registry.Resolve(ctx, staging+":1.0.0")
	if err != nil {
		t.Fatalf("resolve %s:1.0.0: %v", staging, err)
	}
	if got.String() != rel.Digest {
		t.Errorf("%s:1.0.0 is %s, want %s", staging, got, rel.Digest)
	}
	if _, err := sign.Verify(ctx, rel.Ref, sign.VerifyPolicy{Key: pub, RequireGate: true}); err != nil {
		t.Fatalf("verify %s: %v", rel.Ref, err)
	}

	t.Run("provenance", func(t *testing.T) {
		checkProvenance(t, rel.Ref, addr+"/run/diabetes", keyPath, pub, srcRev)
	})

	t.Run("deploy", func(t *testing.T) {
		c := k8stest.Start(t)
		ns := c.Namespace(t)
		out := call(t, "deploy", "--ref", rel.Ref, "--spec", linregSpec,
			"--kubeconfig", "file:"+c.Kubeconfig, "--context", k8stest.Context, "--namespace", ns,
			"--api-server", apiServerTunnel(t, c), "--registry", "tcp://"+addr, "--public-key", pubPath)
		if got := strings.TrimSpace(out); got != rel.Ref {
			t.Errorf("deploy printed %q, want %s", got, rel.Ref)
		}
		checkRunning(t, c, ns, rel.Ref)
	})

	t.Run("promote", func(t *testing.T) {
		c := k8stest.Start(t)
		stagingNS, prodNS := c.Namespace(t), c.Namespace(t)
		project := promoteProject(t, pub, fmt.Sprintf(`
verify:
  key: cosign.pub
deploy:
  replicas: 2
environments:
  staging: {repository: %s, context: %s, namespace: %s}
  prod: {repository: %s, context: %s, namespace: %s, constraint: ">= 1.0, < 2.0"}
`, staging, k8stest.Context, stagingNS, prod, k8stest.Context, prodNS))

		out := call(t, "promote", "--source", project, "--model", "diabetes@1.0.0", "--from", "staging", "--to", "prod",
			"--reason", "e2e", "--kubeconfig", "file:"+c.Kubeconfig, "--api-server", apiServerTunnel(t, c),
			"--registry", "tcp://"+addr, "--key", "file:"+keyPath, "--key-password", "env:MODELCI_TEST_KEY_PASSWORD")
		var res promote.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("promote output %q: %v", out, err)
		}
		want := prod + "@" + rel.Digest
		checkDocument(t, out, "modelci.dev/dagger-promote/v1")
		if got := workflowReads(t, "modelci.yml", `"$RUNNER_TEMP/promote.json"`, out)[".image"]; got != want {
			t.Errorf("modelci.yml's jq reads image %q, want %s", got, want)
		}
		if res.Digest != rel.Digest || res.Image != want || res.Source != rel.Ref {
			t.Errorf("promoted %s (%s) from %s, want %s from %s", res.Image, res.Digest, res.Source, want, rel.Ref)
		}

		// The prod repository holds the same digest under the version tag,
		// signed as in staging, with a promotion attestation signed by the key.
		got, err := registry.Resolve(ctx, prod+":1.0.0")
		if err != nil || got.String() != rel.Digest {
			t.Fatalf("%s:1.0.0 is %v (%v), want %s", prod, got, err, rel.Digest)
		}
		if _, err := sign.Verify(ctx, want, sign.VerifyPolicy{Key: pub, RequireGate: true}); err != nil {
			t.Errorf("verify %s: %v", want, err)
		}
		sts, err := sign.VerifiedStatements(ctx, want, promote.PredicateType, sign.VerifyPolicy{Key: pub})
		if err != nil || len(sts) != 1 {
			t.Fatalf("promotion attestations of %s: %d (%v), want 1", want, len(sts), err)
		}
		var pred promote.Predicate
		if err := json.Unmarshal(sts[0].Predicate, &pred); err != nil {
			t.Fatal(err)
		}
		if pred.From.Repository != staging || pred.To.Repository != prod || pred.Reason != "e2e" {
			t.Errorf("promotion attestation from %+v to %+v (reason %q), want %s to %s (e2e)", pred.From, pred.To, pred.Reason, staging, prod)
		}
		checkRunning(t, c, prodNS, want)
	})
}

// apiServerTunnel is the --api-server argument for c's API server.
func apiServerTunnel(t *testing.T, c *k8stest.Cluster) string {
	t.Helper()
	u, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	return "tcp://" + u.Host
}

// promoteProject is a source directory for `dagger call promote`: the
// example's spec with extra sections, and the public key verify: names.
func promoteProject(t *testing.T, pub []byte, extra string) string {
	t.Helper()
	spec, err := os.ReadFile(filepath.Join(repoRoot(t), linregSpec))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), append(spec, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkRunning fails unless ns has the model's Deployments, every
// container running ref.
func checkRunning(t *testing.T, c *k8stest.Cluster, ns, ref string) {
	t.Helper()
	ds, err := c.Client.AppsV1().Deployments(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: deploy.LabelName + "=diabetes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Items) == 0 {
		t.Fatalf("no Deployment of diabetes in %s", ns)
	}
	for _, d := range ds.Items {
		for _, ctr := range d.Spec.Template.Spec.Containers {
			if ctr.Image != ref {
				t.Errorf("Deployment %s/%s runs %s, want %s", ns, d.Name, ctr.Image, ref)
			}
		}
		if d.Status.AvailableReplicas == 0 {
			t.Errorf("Deployment %s/%s has no available replica", ns, d.Name)
		}
	}
}
