package spec_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/train"
)

const validSpec = `apiVersion: modelci.dev/v1
model:
  name: diabetes
  version: 1.0.0
data:
  path: data/diabetes.csv
  target: target
gate:
  threshold: 5000
`

func TestParseSpecDefaults(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec))
	if err != nil {
		t.Fatal(err)
	}
	if *s.Data.TestFraction != 0.2 || *s.Data.Seed != 42 || s.Train.Builtin != "linear" ||
		s.Image.Base != "scratch" || len(s.Image.Platforms) != 1 || s.Output != ".modelci" {
		t.Fatalf("defaults not applied: %+v", s)
	}
	if s.Gate.Confidence != 0.95 || s.Gate.OnInconclusive != "hold" || *s.Gate.Threshold != 5000 {
		t.Fatalf("gate defaults not applied: %+v", s.Gate)
	}
	if got := s.Path("data/x.csv"); got != "/proj/data/x.csv" {
		t.Fatalf("Path = %q", got)
	}
	if p := s.Train.Linear; p.Epochs != 300 || s.Train.Params["epochs"] != 300.0 {
		t.Fatalf("train params = %+v, %v", p, s.Train.Params)
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		want    error
		message string
	}{
		{"unknown top-level key", func(s string) string { return s + "extra: 1\n" }, strictyaml.ErrUnknownKey, "modelci.yaml:10:1: extra: unknown key"},
		{"unknown nested key", func(s string) string { return strings.Replace(s, "threshold:", "treshold:", 1) }, strictyaml.ErrUnknownKey, "modelci.yaml:9:3: gate.treshold: unknown key"},
		{"missing threshold", func(s string) string { return strings.Replace(s, "  threshold: 5000\n", "  metric: loss\n", 1) }, strictyaml.ErrMissing, "gate.threshold: missing required field"},
		{"missing model version", func(s string) string { return strings.Replace(s, "  version: 1.0.0\n", "", 1) }, strictyaml.ErrMissing, "model.version: missing required field"},
		{"wrong type", func(s string) string { return s + "output: [a]\n" }, strictyaml.ErrType, "modelci.yaml:10:9: output: want a string, got a list"},
		{"fraction as string", func(s string) string {
			return strings.Replace(s, "target: target", "target: target\n  test_fraction: fifth", 1)
		}, strictyaml.ErrType, "data.test_fraction: want a number"},
		{"fraction out of range", func(s string) string {
			return strings.Replace(s, "target: target", "target: target\n  test_fraction: 1.5", 1)
		}, spec.ErrSpec, "data.test_fraction"},
		{"wrong apiVersion", func(s string) string { return strings.Replace(s, "modelci.dev/v1", "modelci.dev/v2", 1) }, spec.ErrSpec, "apiVersion"},
		{"bad model name", func(s string) string { return strings.Replace(s, "name: diabetes", "name: Diabetes_Model", 1) }, spec.ErrSpec, "model.name"},
		{"leading v version", func(s string) string { return strings.Replace(s, "1.0.0", "v1.0.0", 1) }, spec.ErrSpec, "model.version"},
		{"deploy enabled without context", func(s string) string { return s + "deploy:\n  enabled: true\n" }, spec.ErrSpec, "deploy.context"},
		{"deploy unknown key", func(s string) string { return s + "deploy:\n  replica: 3\n" }, strictyaml.ErrUnknownKey, "deploy.replica"},
		{"deploy bad steps", func(s string) string { return s + "deploy:\n  strategy: canary\n  steps: [50, 10]\n" }, nil, "steps"},
		{"sign key and keyless", func(s string) string { return s + "sign: {key: cosign.key, keyless: true}\n" }, spec.ErrSpec, "sign: invalid spec: set key or keyless"},
		{"verify identity without issuer", func(s string) string { return s + "verify: {certificate_identity: me}\n" }, spec.ErrSpec, "go together"},
		{"sign unknown key", func(s string) string { return s + "sign: {keyfile: x}\n" }, strictyaml.ErrUnknownKey, "sign.keyfile"},
		{"environment without repository", func(s string) string { return s + "environments: {staging: {}}\n" }, spec.ErrSpec, "environments.staging.repository"},
		{"unknown trainer param", func(s string) string { return s + "train:\n  params: {epoch: 3}\n" }, strictyaml.ErrUnknownKey, "modelci.yaml:11:12: train.params.epoch: unknown key"},
		{"bad trainer param value", func(s string) string { return s + "train:\n  params: {epochs: 0}\n" }, nil, "train.params"},
		{"builtin and command", func(s string) string { return s + "train:\n  builtin: linear\n  command: [x]\n" }, spec.ErrSpec, "set builtin or command, not both"},
		{"command without evaluator", func(s string) string { return s + "train:\n  command: [python3, t.py]\n  format: onnx\n" }, spec.ErrSpec, "evaluate.command"},
		{"external trainer without a format", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\nevaluate:\n  command: [python3, e.py]\n"
		}, spec.ErrSpec, "train.format: invalid spec: an external trainer's model needs a format modelci's runtime serves (linear, onnx), or image.base"},
		{"unknown format", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\n  format: torchscript\nevaluate:\n  command: [python3, e.py]\n"
		}, spec.ErrSpec, `train.format: invalid spec: "torchscript" is not a format modelci's runtime serves`},
		{"built-in trainer as onnx", func(s string) string { return s + "train:\n  builtin: linear\n  format: onnx\n" }, spec.ErrSpec, `the built-in linear trainer writes linear, not "onnx"`},
		{"format with a base image", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\n  format: onnx\nevaluate:\n  command: [python3, e.py]\nimage:\n  base: 127.0.0.1:5000/triton:1\n"
		}, spec.ErrSpec, "with image.base"},
		{"base image without an entrypoint", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\nevaluate:\n  command: [python3, e.py]\nimage:\n  base: 127.0.0.1:5000/triton:1\n"
		}, spec.ErrSpec, "image.entrypoint: invalid spec"},
		{"entrypoint on scratch", func(s string) string { return s + "image:\n  entrypoint: [/srv]\n" }, spec.ErrSpec, "apply to image.base"},
		{"smoke on scratch", func(s string) string { return s + "smoke:\n  command: [./smoke.sh]\n" }, spec.ErrSpec, "smoke.command applies to image.base"},
		{"bad smoke timeout", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\nevaluate:\n  command: [python3, e.py]\nimage:\n  base: 127.0.0.1:5000/triton:1\n  cmd: [serve]\nsmoke:\n  command: [./smoke.sh]\n  timeout: soon\n"
		}, spec.ErrDuration, `smoke.timeout: invalid spec: "soon" is not a positive Go duration`},
		{"bad train timeout", func(s string) string { return s + "train:\n  timeout: 30 minutes\n" }, spec.ErrDuration, `train.timeout: invalid spec: "30 minutes" is not a positive Go duration`},
		{"negative train timeout", func(s string) string { return s + "train:\n  timeout: -1m\n" }, spec.ErrDuration, `train.timeout: invalid spec: "-1m"`},
		{"zero evaluate timeout", func(s string) string { return s + "evaluate:\n  timeout: 0s\n" }, spec.ErrDuration, `evaluate.timeout: invalid spec: "0s"`},
		{"train timeout as a number", func(s string) string { return s + "train:\n  timeout: [1]\n" }, strictyaml.ErrType, "train.timeout"},
		{"secret in train.env", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\n  format: onnx\n  env: [HF_TOKEN, MODELCI_KEY_PASSWORD]\nevaluate:\n  command: [python3, e.py]\n"
		}, train.ErrSecretEnv, "train.env[1]: invalid spec: MODELCI_KEY_PASSWORD: "},
		{"secret in evaluate.env", func(s string) string {
			return s + "evaluate:\n  command: [python3, e.py]\n  env: [GITHUB_TOKEN]\n"
		}, train.ErrSecretEnv, "evaluate.env[0]: invalid spec: GITHUB_TOKEN: "},
		{"MODELCI_ name in train.env", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\n  format: onnx\n  env: [MODELCI_DATA]\nevaluate:\n  command: [python3, e.py]\n"
		}, train.ErrSecretEnv, "train.env[0]: invalid spec: MODELCI_DATA: "},
		{"bad name in train.env", func(s string) string {
			return s + "train:\n  command: [python3, t.py]\n  format: onnx\n  env: [A=B]\nevaluate:\n  command: [python3, e.py]\n"
		}, train.ErrEnvName, "train.env[0]"},
		{"train.env with the builtin trainer", func(s string) string { return s + "train:\n  env: [HF_TOKEN]\n" }, spec.ErrSpec, "train: invalid spec: env and workdir apply to train.command"},
		{"evaluate.workdir without a command", func(s string) string { return s + "evaluate:\n  workdir: src\n" }, spec.ErrSpec, "evaluate: invalid spec: env and workdir apply to evaluate.command"},
		{"unknown builtin", func(s string) string { return s + "train:\n  builtin: xgboost\n" }, spec.ErrSpec, "train.builtin"},
		{"bad platform", func(s string) string { return s + "image:\n  platforms: [windows/amd64]\n" }, spec.ErrSpec, "image.platforms[0]"},
		{"bad repository", func(s string) string { return s + "image:\n  repository: diabetes\n" }, spec.ErrSpec, "image.repository"},
		{"confidence zero", func(s string) string {
			return strings.Replace(s, "threshold: 5000", "threshold: 5000\n  confidence: 0", 1)
		}, nil, "confidence"},
		{"confidence out of range", func(s string) string {
			return strings.Replace(s, "threshold: 5000", "threshold: 5000\n  confidence: 1.5", 1)
		}, nil, "confidence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := spec.Parse("modelci.yaml", "/proj", []byte(tt.edit(validSpec)))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.message)
			}
		})
	}
}

func TestParseSpecCommandEnv(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec+`train:
  command: [python3, train.py]
  format: onnx
  env: [HF_TOKEN, CUDA_VISIBLE_DEVICES]
  workdir: src
evaluate:
  command: [python3, evaluate.py]
  env: [HF_TOKEN]
  workdir: /abs/eval
`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Train.Env, ",") != "HF_TOKEN,CUDA_VISIBLE_DEVICES" || strings.Join(s.Evaluate.Env, ",") != "HF_TOKEN" {
		t.Errorf("env %v, %v", s.Train.Env, s.Evaluate.Env)
	}
	if s.Train.Workdir != "/proj/src" || s.Evaluate.Workdir != "/abs/eval" {
		t.Errorf("workdir %q, %q: want them resolved against the spec's directory", s.Train.Workdir, s.Evaluate.Workdir)
	}
}

func TestStarterIsValid(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", spec.Starter("my-model"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Model.Name != "my-model" {
		t.Fatalf("name = %q", s.Model.Name)
	}
}

func TestExampleSpecIsValid(t *testing.T) {
	s, err := spec.Load(filepath.Join("..", "examples", "linreg", "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path(s.Data.Path)); err != nil {
		t.Fatalf("example data: %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(validSpec))
	f.Add(spec.Starter("x"))
	f.Add([]byte("apiVersion: modelci.dev/v1\nmodel: {name: a, version: 1.0.0}\ndata: {path: a, target: b}\ngate: {threshold: 1}\ntrain: {params: {epochs: 3}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := spec.Parse("modelci.yaml", "/proj", b)
		if err != nil {
			return
		}
		// A spec that parses has every required field and a sane split.
		if s.Model.Name == "" || s.Data.Path == "" || s.Gate.Threshold == nil {
			t.Fatalf("accepted a spec without required fields: %q", b)
		}
		if f := *s.Data.TestFraction; !(f > 0 && f < 1) {
			t.Fatalf("accepted test_fraction %v", f)
		}
	})
}

func TestKeyPathsAreTheSpecDirectorys(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec+"sign: {key: keys/cosign.key}\nverify: {key: cosign.pub}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sign.Key != "/proj/keys/cosign.key" || s.Verify.Key != "/proj/cosign.pub" || s.VerifyPolicy().KeyPath != "/proj/cosign.pub" {
		t.Errorf("sign.key %q, verify.key %q, policy key %q", s.Sign.Key, s.Verify.Key, s.VerifyPolicy().KeyPath)
	}
}

func TestLoadRollout(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "deploy.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A deploy-only file: the other sections may be absent.
	r, err := spec.LoadRollout(write("apiVersion: modelci.dev/v1\nverify: {key: cosign.pub}\ndeploy: {replicas: 2, strategy: canary}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Deploy.Replicas != 2 || r.Deploy.Strategy != "canary" || r.Deploy.Namespace != "models" || r.Verify.Key != filepath.Join(dir, "cosign.pub") {
		t.Errorf("rollout %+v", r)
	}
	for _, tt := range []struct{ body, want string }{
		{"apiVersion: modelci.dev/v1\ndeploy: {replica: 2}\n", "deploy.replica: unknown key"},
		{"apiVersion: modelci.dev/v1\nverfy: {}\n", "verfy: unknown key"},
		{"apiVersion: modelci.dev/v2\n", "apiVersion"},
		{"apiVersion: modelci.dev/v1\nverify: {certificate_identity: me}\n", "go together"},
		{"apiVersion: modelci.dev/v1\ndeploy: {enabled: true}\n", "deploy.context"},
	} {
		if _, err := spec.LoadRollout(write(tt.body)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want it to name %q", tt.body, err, tt.want)
		}
	}
}

func TestParseSpecTimeouts(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.TimeoutDuration() != 0 || s.Evaluate.TimeoutDuration() != 0 {
		t.Fatalf("default timeouts %v, %v; want none", s.Train.TimeoutDuration(), s.Evaluate.TimeoutDuration())
	}
	s, err = spec.Parse("modelci.yaml", "/proj", []byte(validSpec+
		"train:\n  command: [python3, t.py]\n  format: onnx\n  timeout: 1h30m\nevaluate:\n  command: [python3, e.py]\n  timeout: 45s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Train.TimeoutDuration(); got != 90*time.Minute {
		t.Errorf("train.timeout = %v, want 1h30m", got)
	}
	if got := s.Evaluate.TimeoutDuration(); got != 45*time.Second {
		t.Errorf("evaluate.timeout = %v, want 45s", got)
	}
}
