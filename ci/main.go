// The modelci Dagger module: `dagger call release …` runs the pipeline of
// `modelci run` (split, train, evaluate, gate, image) with each step in a
// container, then publishes, signs and deploys what it built.
//
// The module imports none of modelci's packages. It wires containers, and
// each step runs `modelci stage STEP` (internal/stage) from a modelci
// binary built from the source being released: the spec is read by
// modelci's own reader, metrics, the gate and the attestation predicates
// are made by the code `modelci run` calls, so a release gives the same
// model and image digests as `modelci run` on the same inputs with the
// same Go toolchain, and the module cannot drift from it. It also keeps
// the module's own build small and independent of modelci's source: a
// change there rebuilds modelci, not the module.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/modelci/modelci/ci/internal/dagger"
)

// Modelci builds, gates, publishes and deploys machine-learning models.
type Modelci struct {
	// modelci's own source: the modelci binary that runs the steps and
	// serves in the image is compiled from it.
	ModelciSource *dagger.Directory
	// A modelci binary built from ModelciSource, when the caller has one.
	ModelciBinary *dagger.File
	// The image's server, modelci-serve, built from ModelciSource, when the
	// caller has one.
	ModelciRuntime *dagger.File
}

// New returns the module. The project to build is each function's source
// argument; modelciSource is modelci's own code (this module's repository).
func New(
	// modelci's source, from which the step runner (cmd/modelci) and the image's server (cmd/modelci-serve) are built.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/*.test", "examples", "docs", "bench", "ci"]
	modelciSource *dagger.Directory,
	// modelci for linux/amd64, already built from modelciSource with `CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" ./cmd/modelci`: the module then compiles no step runner. The caller vouches that it was built from that source. Without it the module builds it in the engine, with Go's caches in cache volumes.
	// +optional
	modelciBinary *dagger.File,
	// modelci-serve, the image's server, for linux/amd64, already built from modelciSource with `CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" ./cmd/modelci-serve` (what `modelci run` builds): the module then compiles no runtime. The caller vouches that it was built from that source. Without it the module builds it in the engine.
	// +optional
	modelciRuntime *dagger.File,
) *Modelci {
	return &Modelci{ModelciSource: modelciSource, ModelciBinary: modelciBinary, ModelciRuntime: modelciRuntime}
}

// Paths inside step containers.
const (
	srcDir      = "/src"
	cliBin      = "/usr/local/bin/modelci"
	caBundle    = "/etc/ssl/certs/ca-certificates.crt"
	dataMount   = "/modelci/data"
	outMount    = "/modelci/out"
	modelMount  = "/modelci/model"
	splitMount  = "/modelci/split"
	imageOut    = "/modelci/image"
	stepOut     = "/modelci/step"
	secretsRoot = "/run/secrets"
)

// Trainer and evaluator contract v1 (the environment and files modelci
// gives a trainer and an evaluator; README, "Trainer contract v1").
const (
	envData        = "MODELCI_DATA"
	envOut         = "MODELCI_OUT"
	envParams      = "MODELCI_PARAMS"
	envSeed        = "MODELCI_SEED"
	envModel       = "MODELCI_MODEL"
	trainReport    = "train.json"
	predictionFile = "predictions.json"
)

// stage runs `modelci stage ARGS…` in c.
func stage(c *dagger.Container, args ...string) *dagger.Container {
	return c.WithExec(append([]string{cliBin, "stage"}, args...))
}

// plan is `modelci stage plan`'s document (internal/stage.Plan,
// modelci.dev/stage-plan/v1): what the module needs of a spec.
type plan struct {
	Schema string `json:"schema"`
	Model  struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"model"`
	Data struct {
		Path         string  `json:"path"`
		Target       string  `json:"target"`
		TestFraction float64 `json:"test_fraction"`
		Seed         int64   `json:"seed"`
	} `json:"data"`
	Train struct {
		Builtin string         `json:"builtin"`
		Command []string       `json:"command"`
		Image   string         `json:"image"`
		GPU     bool           `json:"gpu"`
		Params  map[string]any `json:"params"`
	} `json:"train"`
	Evaluate struct {
		Command []string `json:"command"`
	} `json:"evaluate"`
	Image struct {
		Base      string   `json:"base"`
		Platforms []string `json:"platforms"`
	} `json:"image"`
	Gate struct {
		BaselineFrom string `json:"baseline_from"`
	} `json:"gate"`
}

const planSchema = "modelci.dev/stage-plan/v1"

// project is a spec in a source directory, read by modelci.
type project struct {
	source *dagger.Directory
	spec   string // the spec's path inside source
	dir    string // the spec's directory inside source ("." at its root)
	plan   plan
}

func (m *Modelci) loadProject(ctx context.Context, source *dagger.Directory, specPath string) (*project, error) {
	specPath = path.Clean(specPath)
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, err
	}
	out, err := stage(st.WithMountedDirectory(srcDir, source), "plan", "--spec", path.Join(srcDir, specPath)).Stdout(ctx)
	if err != nil {
		return nil, fmt.Errorf("read spec %s: %w", specPath, err)
	}
	p := &project{source: source, spec: specPath, dir: path.Dir(specPath)}
	if err := json.Unmarshal([]byte(out), &p.plan); err != nil {
		return nil, fmt.Errorf("read spec %s: the plan: %w", specPath, err)
	}
	if p.plan.Schema != planSchema {
		return nil, fmt.Errorf("read spec %s: plan schema %q, want %s: modelciBinary is from another modelci", specPath, p.plan.Schema, planSchema)
	}
	return p, nil
}

// rel is a path from the spec, relative to the source directory.
func (p *project) rel(name string) string { return path.Join(p.dir, name) }

// codeExclude is what a user's trainer or evaluator container never sees of
// the project: data files (it gets only its split, in $MODELCI_DATA), keys
// and credential files, and git's metadata, as the host's staging copy
// leaves them out (stages/internal/proc.ExcludedNames).
var codeExclude = []string{
	"**/*.csv", "**/*.tsv", "**/*.parquet", "**/*.key", "**/*.pem", "**/*.p12", "**/*.pfx",
	"**/.env", "**/.netrc", "**/.npmrc", "**/.pypirc", "**/.docker", "**/id_rsa*", "**/id_ed25519*", "**/id_ecdsa*",
	"**/.git", "**/.modelci",
}

// code is the project as a user's trainer or evaluator sees it at /src:
// without the data set (under its own name too) and without codeExclude.
func (p *project) code() *dagger.Directory {
	return dag.Directory().
		WithDirectory(".", p.source, dagger.DirectoryWithDirectoryOpts{Exclude: codeExclude}).
		WithoutFile(p.rel(p.plan.Data.Path))
}

// withSource mounts the project at /src, the spec at specFile().
func (p *project) withSource(c *dagger.Container) *dagger.Container {
	return c.WithMountedDirectory(srcDir, p.source)
}

func (p *project) specFile() string { return path.Join(srcDir, p.spec) }

// Train trains the model under trainer contract v1 in a container and
// returns the trainer's output directory: model/ and train.json.
//
// The built-in trainer is modelci's own; a spec with `train.command` runs
// that command in the trainer image (the `image` argument, else the spec's
// `train.image`). Training is cached on its inputs: the data, the
// parameters, the seed and the trainer.
func (m *Modelci) Train(
	ctx context.Context,
	// The project: modelci.yaml, its data and, for an external trainer, its code.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
	// Trainer image for an external trainer (default: the spec's train.image).
	// +optional
	image string,
	// Trainer command (default: the spec's train.command).
	// +optional
	command []string,
	// Give the trainer every GPU of the engine's host.
	// +optional
	gpu bool,
) (*dagger.Directory, error) {
	p, err := m.loadProject(ctx, source, spec)
	if err != nil {
		return nil, err
	}
	return m.train(ctx, p, image, command, gpu)
}

func (m *Modelci) train(ctx context.Context, p *project, img string, command []string, gpu bool) (*dagger.Directory, error) {
	pl := p.plan
	pj, err := json.Marshal(pl.Train.Params)
	if err != nil {
		return nil, fmt.Errorf("encode train.params: %w", err)
	}
	split, err := m.split(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(command) == 0 {
		command = pl.Train.Command
	}
	var ctr *dagger.Container
	if len(command) == 0 {
		st, err := m.stageContainer(ctx)
		if err != nil {
			return nil, err
		}
		ctr = stage(withTrainEnv(st, split, string(pj), pl.Data.Seed),
			"train", "--name", pl.Model.Name, "--version", pl.Model.Version, "--target", pl.Data.Target)
	} else {
		if img == "" {
			img = pl.Train.Image
		}
		if img == "" {
			return nil, fmt.Errorf("train: an external trainer (%s) needs a trainer image: pass --image or set train.image", strings.Join(command, " "))
		}
		base := dag.Container().From(img).
			WithMountedDirectory(srcDir, p.code()).
			WithWorkdir(path.Join(srcDir, p.dir))
		if gpu || pl.Train.GPU {
			base = base.ExperimentalWithAllGPUs()
		}
		ctr = withTrainEnv(base, split, string(pj), pl.Data.Seed).WithExec(command)
	}
	out := ctr.Directory(outMount)
	if _, err := out.File(trainReport).Contents(ctx); err != nil {
		return nil, fmt.Errorf("train: the trainer wrote no %s: %w", trainReport, err)
	}
	return out, nil
}

func withTrainEnv(c *dagger.Container, split *dagger.Directory, params string, seed int64) *dagger.Container {
	return c.
		WithMountedDirectory(dataMount, split.Directory("train")).
		WithDirectory(outMount, dag.Directory()).
		WithEnvVariable(envData, dataMount).
		WithEnvVariable(envOut, outMount).
		WithEnvVariable(envParams, params).
		WithEnvVariable(envSeed, strconv.FormatInt(seed, 10))
}

// split runs the data stage: train/train.csv, test/test.csv, split.json.
func (m *Modelci) split(ctx context.Context, p *project) (*dagger.Directory, error) {
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, err
	}
	d := p.plan.Data
	data := path.Join(srcDir, p.rel(d.Path))
	return stage(st.WithMountedFile(data, p.source.File(p.rel(d.Path))), "split",
		"--data", data, "--target", d.Target,
		"--fraction", strconv.FormatFloat(d.TestFraction, 'g', -1, 64),
		"--seed", strconv.FormatInt(d.Seed, 10), "--out", splitMount).
		Directory(splitMount), nil
}

// Evaluate evaluates a trained model on the test split in a container and
// returns metrics.json (metrics.json v1), as `modelci run` writes it.
func (m *Modelci) Evaluate(
	ctx context.Context,
	// The project: modelci.yaml, its data and, for an external evaluator, its code.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
	// Train's output (default: train with the spec's settings).
	// +optional
	trained *dagger.Directory,
	// Evaluator image for an external evaluator (default: the trainer image).
	// +optional
	image string,
	// Evaluator command (default: the spec's evaluate.command).
	// +optional
	command []string,
) (*dagger.File, error) {
	p, err := m.loadProject(ctx, source, spec)
	if err != nil {
		return nil, err
	}
	if trained == nil {
		if trained, err = m.train(ctx, p, image, nil, false); err != nil {
			return nil, err
		}
	}
	metrics, _, err := m.evaluate(ctx, p, trained, image, command)
	return metrics, err
}

// evaluate runs the evaluator, then `stage metrics`, which holds its
// predictions.json and the trainer's train.json to their contracts and
// assembles metrics.json. It returns metrics.json and the evaluator's
// predictions.json (for the smoke test).
func (m *Modelci) evaluate(ctx context.Context, p *project, trained *dagger.Directory, img string, command []string) (*dagger.File, *dagger.File, error) {
	split, err := m.split(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	if len(command) == 0 {
		command = p.plan.Evaluate.Command
	}
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, nil, err
	}
	var ctr *dagger.Container
	if len(command) == 0 {
		ctr = stage(withEvalEnv(st, split, trained), "evaluate", "--target", p.plan.Data.Target)
	} else {
		if img == "" {
			img = p.plan.Train.Image
		}
		if img == "" {
			return nil, nil, fmt.Errorf("evaluate: an external evaluator (%s) needs an image: pass --image or set train.image", strings.Join(command, " "))
		}
		ctr = withEvalEnv(dag.Container().From(img).
			WithMountedDirectory(srcDir, p.code()).
			WithWorkdir(path.Join(srcDir, p.dir)), split, trained).WithExec(command)
	}
	const in = "/modelci/in"
	metrics := path.Join(stepOut, "metrics.json")
	f := stage(p.withSource(st).
		WithMountedDirectory(in+"/split", split).
		WithMountedDirectory(in+"/trained", trained).
		WithMountedDirectory(in+"/eval", ctr.Directory(outMount)),
		"metrics", "--spec", p.specFile(), "--split", in+"/split/split.json",
		"--train", in+"/trained/"+trainReport, "--predictions", in+"/eval/"+predictionFile,
		"--out", metrics).File(metrics)
	if _, err := f.Sync(ctx); err != nil {
		return nil, nil, fmt.Errorf("evaluate: %w", err)
	}
	return f, ctr.File(path.Join(outMount, predictionFile)), nil
}

func withEvalEnv(c *dagger.Container, split, trained *dagger.Directory) *dagger.Container {
	return c.
		WithMountedDirectory(dataMount, split.Directory("test")).
		WithMountedDirectory(modelMount, trained.Directory("model")).
		WithDirectory(outMount, dag.Directory()).
		WithEnvVariable(envModel, modelMount).
		WithEnvVariable(envData, dataMount).
		WithEnvVariable(envOut, outMount)
}

// GateResult is the gate's decision on a candidate model.
type GateResult struct {
	// PASS, FAIL or INCONCLUSIVE.
	Verdict string
	// The report in Markdown, for a job summary or a pull request.
	Report string
	// The report as JSON (modelci gate -o json).
	Json string
	// 0 (pass), 3 (refused) or 4 (held for approval), as modelci's exit codes.
	ExitCode int
}

// Gate evaluates the gate policy on metrics.json: the threshold on the mean
// eval loss with its confidence interval, the comparison with a baseline
// (the champion's metrics.json) when given, and the health checks. A policy
// with gate.baseline.from (an environment's champion) needs the baseline:
// without it the gate refuses to decide rather than skip the comparison.
func (m *Modelci) Gate(
	ctx context.Context,
	// The candidate's metrics.json (Evaluate's output).
	metrics *dagger.File,
	// The champion's metrics.json, for a paired comparison.
	// +optional
	baseline *dagger.File,
	// A file with the content of a gate: block (default: the spec's gate: block).
	// +optional
	policy *dagger.File,
	// The project holding the spec.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
) (*GateResult, error) {
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, err
	}
	args := []string{"gate"}
	if policy != nil {
		st = st.WithMountedFile("/modelci/in/policy.yaml", policy)
		args = append(args, "--policy", "/modelci/in/policy.yaml")
	} else {
		st = st.WithMountedDirectory(srcDir, source)
		args = append(args, "--spec", path.Join(srcDir, path.Clean(spec)))
	}
	return m.gate(ctx, st, args, metrics, baseline)
}

// gate runs `stage gate ARGS… --metrics --baseline --out` in st.
func (m *Modelci) gate(ctx context.Context, st *dagger.Container, args []string, metrics, baseline *dagger.File) (*GateResult, error) {
	st, args = withMetrics(st, args, metrics, baseline)
	out := stage(st, append(args, "--out", stepOut)...).Directory(stepOut)
	var res struct {
		Verdict  string `json:"verdict"`
		ExitCode int    `json:"exit_code"`
	}
	b, err := out.File("result.json").Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	if err := json.Unmarshal([]byte(b), &res); err != nil {
		return nil, fmt.Errorf("gate: result.json: %w", err)
	}
	g := &GateResult{Verdict: res.Verdict, ExitCode: res.ExitCode}
	if g.Report, err = out.File("report.md").Contents(ctx); err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	if g.Json, err = out.File("report.json").Contents(ctx); err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return g, nil
}

// withMetrics mounts the candidate's and the champion's metrics.json for
// `stage gate` and `stage predicates`.
func withMetrics(st *dagger.Container, args []string, metrics, baseline *dagger.File) (*dagger.Container, []string) {
	st = st.WithMountedFile("/modelci/in/metrics.json", metrics)
	args = append(args, "--metrics", "/modelci/in/metrics.json")
	if baseline != nil {
		st = st.WithMountedFile("/modelci/in/baseline.json", baseline)
		args = append(args, "--baseline", "/modelci/in/baseline.json")
	}
	return st, args
}

// Build builds the serving image, modelci's server and the model on
// scratch, reproducibly (stages/image), and returns it as a container.
func (m *Modelci) Build(
	ctx context.Context,
	// The project: modelci.yaml and its data.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
	// Train's output (default: train with the spec's settings).
	// +optional
	trained *dagger.Directory,
	// Image creation time in seconds since the Unix epoch, as SOURCE_DATE_EPOCH.
	// +optional
	created int,
) (*dagger.Container, error) {
	p, err := m.loadProject(ctx, source, spec)
	if err != nil {
		return nil, err
	}
	if trained == nil {
		if trained, err = m.train(ctx, p, "", nil, false); err != nil {
			return nil, err
		}
	}
	out, err := m.image(ctx, p, trained, created)
	if err != nil {
		return nil, err
	}
	return dag.Container().Import(out.File("image.tar")), nil
}

// imageInfo is `stage image`'s image.json.
type imageInfo struct {
	Digest string `json:"digest"`
	Tag    string `json:"tag"`
}

// image builds the image with `stage image` and returns its output
// directory: oci/ (a layout holding it), image.tar and image.json.
func (m *Modelci) image(ctx context.Context, p *project, trained *dagger.Directory, created int) (*dagger.Directory, error) {
	im := p.plan.Image
	if im.Base != "scratch" && im.Base != "" {
		return nil, fmt.Errorf("build: image.base %q: only scratch images are built by the module so far", im.Base)
	}
	if len(im.Platforms) != 1 || im.Platforms[0] != "linux/amd64" {
		return nil, fmt.Errorf("build: image.platforms %v: the module builds linux/amd64 only so far", im.Platforms)
	}
	split, err := m.split(ctx, p)
	if err != nil {
		return nil, err
	}
	var sp struct {
		DatasetDigest string `json:"dataset_digest"`
	}
	if err := decodeFile(ctx, split.File("split.json"), &sp); err != nil {
		return nil, err
	}
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, err
	}
	rt, err := m.runtime(ctx)
	if err != nil {
		return nil, err
	}
	// The image's server is modelci-serve, as `modelci run` builds it.
	const runtimeBin = "/modelci/runtime/modelci-serve"
	return stage(st.WithMountedDirectory(modelMount, trained.Directory("model")).WithMountedFile(runtimeBin, rt), "image",
		"--model", modelMount, "--runtime", runtimeBin,
		"--name", p.plan.Model.Name, "--version", p.plan.Model.Version, "--dataset-digest", sp.DatasetDigest,
		"--created", strconv.Itoa(created), "--out", imageOut).
		Directory(imageOut), nil
}

func decodeFile(ctx context.Context, f *dagger.File, v any) error {
	s, err := f.Contents(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(s), v)
}

// Publish builds the image and pushes it to a registry repository as
// REPOSITORY:VERSION, returning REPOSITORY@sha256:…. The same version with
// another digest is refused unless allowOverwrite.
//
// +cache="never"
func (m *Modelci) Publish(
	ctx context.Context,
	// The project: modelci.yaml and its data.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
	// Repository to push to, HOST[:PORT]/PATH.
	address string,
	// A registry on the caller's host (tcp://localhost:PORT): reached through this tunnel, over plain HTTP.
	// +optional
	registry *dagger.Service,
	// Registry user name.
	// +optional
	username string,
	// Registry password or token.
	// +optional
	password *dagger.Secret,
	// Move an existing version tag to another digest.
	// +optional
	allowOverwrite bool,
	// Image creation time in seconds since the Unix epoch, as SOURCE_DATE_EPOCH.
	// +optional
	created int,
) (string, error) {
	p, err := m.loadProject(ctx, source, spec)
	if err != nil {
		return "", err
	}
	trained, err := m.train(ctx, p, "", nil, false)
	if err != nil {
		return "", err
	}
	out, err := m.image(ctx, p, trained, created)
	if err != nil {
		return "", err
	}
	return m.publish(ctx, out, address, registry, username, password, allowOverwrite)
}

func (m *Modelci) publish(ctx context.Context, out *dagger.Directory, address string, registry *dagger.Service, username string, password *dagger.Secret, allowOverwrite bool) (string, error) {
	var img imageInfo
	if err := decodeFile(ctx, out.File("image.json"), &img); err != nil {
		return "", err
	}
	st, err := m.stageContainer(ctx)
	if err != nil {
		return "", err
	}
	st = once(st)
	to, insecure := address, false
	if registry != nil {
		st, to = tunnel(st, registry, address)
		insecure = true
	}
	args := []string{"push", "--layout", "/modelci/oci", "--digest", img.Digest, "--to", to + ":" + img.Tag}
	if insecure {
		args = append(args, "--insecure")
	}
	if username != "" {
		args = append(args, "--username", username)
	}
	if password != nil {
		st = st.WithSecretVariable("MODELCI_REGISTRY_PASSWORD", password)
	}
	if allowOverwrite {
		args = append(args, "--allow-overwrite")
	}
	if _, err := stage(st.WithMountedDirectory("/modelci/oci", out.Directory("oci")), args...).Stdout(ctx); err != nil {
		return "", fmt.Errorf("publish to %s: %w", address, err)
	}
	return address + "@" + img.Digest, nil
}

// tunnel binds a host service as "registry" and rewrites address's host to
// it: HOST[:PORT]/PATH → registry:PORT/PATH.
func tunnel(c *dagger.Container, svc *dagger.Service, address string) (*dagger.Container, string) {
	host, rest, _ := strings.Cut(address, "/")
	port := "80"
	if _, p, ok := strings.Cut(host, ":"); ok {
		port = p
	}
	return c.WithServiceBinding("registry", svc), "registry:" + port + "/" + rest
}

// once makes a side effect run on every call rather than come from the
// engine's cache.
func once(c *dagger.Container) *dagger.Container {
	return c.WithEnvVariable("MODELCI_CALL", strconv.FormatInt(time.Now().UnixNano(), 10))
}

// Sign signs an image by digest: with a cosign key, or keyless with an OIDC
// identity token (GitHub Actions passes the workflow's). Returns the tag
// holding the signatures. (Release also attests the gate verdict and the
// provenance, and attaches the signed metrics, as `modelci run` does.)
//
// +cache="never"
func (m *Modelci) Sign(
	ctx context.Context,
	// The image, REPOSITORY@sha256:… (Publish's output).
	ref string,
	// A registry on the caller's host (tcp://localhost:PORT), reached through this tunnel.
	// +optional
	registry *dagger.Service,
	// cosign private key (PEM).
	// +optional
	key *dagger.Secret,
	// The key's password.
	// +optional
	password *dagger.Secret,
	// OIDC identity token for keyless signing.
	// +optional
	oidcToken *dagger.Secret,
	// Unused; kept so that existing `dagger call sign --source …` lines still work.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
) (string, error) {
	st, err := m.stageContainer(ctx)
	if err != nil {
		return "", err
	}
	return m.sign(ctx, once(st), ref, registry, key, password, oidcToken, nil)
}

// sign signs ref in the stage container; attest, when set, holds gate.json,
// provenance.json and metrics.json to attest and attach as well.
func (m *Modelci) sign(ctx context.Context, st *dagger.Container, ref string, registry *dagger.Service, key, password, oidcToken *dagger.Secret, attest *dagger.Directory) (string, error) {
	if key == nil && oidcToken == nil {
		return "", fmt.Errorf("sign %s: give a key or an OIDC token", ref)
	}
	target := ref
	args := []string{"sign"}
	if registry != nil {
		st, target = tunnel(st, registry, ref)
		args = append(args, "--insecure")
	}
	if key != nil {
		st = st.WithMountedSecret(secretsRoot+"/cosign.key", key)
		args = append(args, "--key", secretsRoot+"/cosign.key")
	}
	if password != nil {
		st = st.WithSecretVariable("MODELCI_KEY_PASSWORD", password)
	}
	if oidcToken != nil {
		st = st.WithSecretVariable("SIGSTORE_ID_TOKEN", oidcToken)
	}
	if attest != nil {
		const dir = "/modelci/attest"
		st = st.WithMountedDirectory(dir, attest)
		args = append(args, "--gate", dir+"/gate.json", "--provenance", dir+"/provenance.json", "--metrics", dir+"/metrics.json")
	}
	out, err := stage(st, append(args, "--ref", target)...).Stdout(ctx)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	return strings.TrimSpace(out), nil
}

// Deploy verifies an image and rolls it out to Kubernetes with `modelci
// deploy`, and returns the deployed reference. The spec's deploy: section
// configures the rollout (replicas, strategy, services, autoscaling,
// analysis) and its verify: section the verification, unless publicKey
// says otherwise. The Deployments run the image by ref, as given.
//
// +cache="never"
func (m *Modelci) Deploy(
	ctx context.Context,
	// The image, REPOSITORY@sha256:… (signed, with its gate attestation).
	ref string,
	// A kubeconfig for the cluster.
	kubeconfig *dagger.Secret,
	// The kubeconfig context (default: the spec's deploy.context, else the kubeconfig's current one).
	// +optional
	context string,
	// The namespace (default: the spec's deploy.namespace).
	// +optional
	namespace string,
	// cosign public key the image must be signed with (default: the spec's verify: section).
	// +optional
	publicKey *dagger.File,
	// rolling or canary (default: the spec's deploy.strategy).
	// +optional
	strategy string,
	// An API server on the caller's host (tcp://127.0.0.1:PORT), reached through this tunnel: it answers at 127.0.0.1:PORT in the step too, so the kubeconfig works unchanged.
	// +optional
	apiServer *dagger.Service,
	// A registry on the caller's host (tcp://127.0.0.1:PORT) holding ref, reached through this tunnel: it answers at 127.0.0.1:PORT in the step too, so ref works unchanged.
	// +optional
	registry *dagger.Service,
	// Registry user name, for the verification.
	// +optional
	username string,
	// Registry password or token.
	// +optional
	password *dagger.Secret,
	// The project: its spec (deploy: and verify: sections) and the files the spec names (verify.key).
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
) (string, error) {
	out, err := m.deploy(ctx, source, spec, ref, context, namespace, strategy, publicKey,
		access{kubeconfig: kubeconfig, apiServer: apiServer, registry: registry, username: username, password: password})
	return strings.TrimSpace(out), err
}

func (m *Modelci) deploy(ctx context.Context, source *dagger.Directory, spec, ref, kubeContext, namespace, strategy string, publicKey *dagger.File, a access) (string, error) {
	c, err := m.cliContainer(ctx, source, spec)
	if err != nil {
		return "", err
	}
	args := []string{"deploy", ref, "--spec", path.Join(srcDir, spec)}
	if kubeContext != "" {
		args = append(args, "--context", kubeContext)
	}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	if strategy != "" {
		args = append(args, "--strategy", strategy)
	}
	if publicKey != nil {
		// deploy's --key is the public key to verify with.
		c = c.WithMountedFile(secretsRoot+"/cosign.pub", publicKey)
		args = append(args, "--key", secretsRoot+"/cosign.pub")
	}
	c, routes, args, err := a.apply(ctx, c, args)
	if err != nil {
		return "", err
	}
	return runCLI(ctx, c, routes, args)
}

// Promote promotes a released model version from one environment to the
// next with `modelci promote`, as the spec's environments: section defines
// them (repository, kubeconfig context, namespace, version constraint,
// required verdict, strategy). Under the target's Lease it resolves the
// version in the source repository, verifies it with the spec's verify:
// section, checks the constraint, the verdict and that the version moves
// forward, copies the image by digest with its signatures and attestations
// (under deploy.model_source volume also its ModelPack artifact and the
// runtime image, verified again in the target), attests the promotion (signed with key, or keyless with oidcToken, else
// as the spec's sign: section says) and deploys it to the target's
// namespace. A re-run after an interruption converges.
//
// Returns promote's JSON result (`modelci promote -o json`) with a schema,
// modelci.dev/dagger-promote/v1: the digest, the source and target
// references, the tags copied, the attestation tag and the steps (and, in
// volume mode, the model artifact and runtime image). A refusal
// (verification, constraint, verdict, downgrade) is an error saying why.
//
// +cache="never"
func (m *Modelci) Promote(
	ctx context.Context,
	// The model version to promote, NAME@VERSION (model.name and model.version as released).
	model string,
	// The environment it runs in now (a key of the spec's environments:).
	from string,
	// The environment to promote it to.
	to string,
	// A kubeconfig with the target environment's context: promote deploys there.
	kubeconfig *dagger.Secret,
	// Why, for the promotion attestation and the release history.
	// +optional
	reason string,
	// Accept an INCONCLUSIVE gate verdict where the target requires PASS (needs a reason).
	// +optional
	approve bool,
	// Promote a version not greater than the one the target runs.
	// +optional
	allowDowngrade bool,
	// An API server on the caller's host (tcp://127.0.0.1:PORT), reached through this tunnel: it answers at 127.0.0.1:PORT in the step too, so the kubeconfig works unchanged.
	// +optional
	apiServer *dagger.Service,
	// A registry on the caller's host (tcp://127.0.0.1:PORT) holding the environments' repositories, reached through this tunnel (a local-testing aid): it answers at 127.0.0.1:PORT in the step too, so the spec's repositories work unchanged.
	// +optional
	registry *dagger.Service,
	// Registry user name, for both repositories.
	// +optional
	username string,
	// Registry password or token.
	// +optional
	password *dagger.Secret,
	// cosign private key (PEM) to sign the promotion attestation with.
	// +optional
	key *dagger.Secret,
	// The key's password.
	// +optional
	keyPassword *dagger.Secret,
	// OIDC identity token: sign the promotion attestation keyless (Fulcio, Rekor).
	// +optional
	oidcToken *dagger.Secret,
	// Fulcio for keyless signing (default: the public Sigstore instance).
	// +optional
	fulcioURL string,
	// Rekor for keyless signing (default: the public Sigstore instance).
	// +optional
	rekorURL string,
	// The project: its spec, and the files the spec names (verify.key).
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
) (string, error) {
	if key != nil && oidcToken != nil {
		return "", fmt.Errorf("promote %s: give a key or an OIDC token, not both", model)
	}
	c, err := m.cliContainer(ctx, source, spec)
	if err != nil {
		return "", err
	}
	args := []string{"promote", model, "--from", from, "--to", to, "--spec", path.Join(srcDir, spec), "-o", "json"}
	if reason != "" {
		args = append(args, "--reason", reason)
	}
	if approve {
		args = append(args, "--approve")
	}
	if allowDowngrade {
		args = append(args, "--allow-downgrade")
	}
	if key != nil {
		c = c.WithMountedSecret(secretsRoot+"/cosign.key", key)
		args = append(args, "--key", secretsRoot+"/cosign.key")
	}
	if keyPassword != nil {
		c = c.WithSecretVariable("MODELCI_KEY_PASSWORD", keyPassword)
	}
	if oidcToken != nil {
		c = c.WithSecretVariable("SIGSTORE_ID_TOKEN", oidcToken)
		args = append(args, "--keyless")
	}
	if fulcioURL != "" {
		args = append(args, "--fulcio-url", fulcioURL)
	}
	if rekorURL != "" {
		args = append(args, "--rekor-url", rekorURL)
	}
	c, routes, args, err := access{kubeconfig: kubeconfig, apiServer: apiServer, registry: registry, username: username, password: password}.apply(ctx, c, args)
	if err != nil {
		return "", err
	}
	out, err := runCLI(ctx, c, routes, args)
	if err != nil {
		return "", err
	}
	// The module's document, whatever modelci's promote names its own.
	return withSchema(out, promoteSchema, true)
}

// promoteSchema versions Promote's JSON document.
const promoteSchema = "modelci.dev/dagger-promote/v1"

// withSchema adds a schema key to a JSON object, so that every document
// the module returns says what it is; the keys are modelci's own
// snake_case ones. A document that names its schema keeps it unless
// replace.
func withSchema(doc, schema string, replace bool) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &obj); err != nil {
		return "", fmt.Errorf("modelci's JSON result: %w", err)
	}
	if _, ok := obj["schema"]; ok && !replace {
		return doc, nil // modelci names its document itself
	}
	s, err := json.Marshal(schema)
	if err != nil {
		return "", err
	}
	obj["schema"] = s
	b, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode the JSON result: %w", err)
	}
	return string(b) + "\n", nil
}

// cliContainer has modelci and the project at /src,
// and works in the spec's directory: paths in the spec and in flags mean
// what they mean to `modelci -C DIR`.
func (m *Modelci) cliContainer(ctx context.Context, source *dagger.Directory, spec string) (*dagger.Container, error) {
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, err
	}
	return once(st).
		WithMountedDirectory(srcDir, source).
		WithWorkdir(path.Join(srcDir, path.Dir(path.Clean(spec)))), nil
}

// access is how a modelci command in a container reaches the registry and
// the cluster.
type access struct {
	kubeconfig          *dagger.Secret
	apiServer, registry *dagger.Service
	username            string
	password            *dagger.Secret
}

// apply mounts the credentials into c and binds the tunnels. It returns
// the `stage forward` routes that make each tunnel answer at 127.0.0.1 on
// its ports, as it does on the caller's host, and args with --kubeconfig.
func (a access) apply(ctx context.Context, c *dagger.Container, args []string) (*dagger.Container, []string, []string, error) {
	if a.kubeconfig != nil {
		c = c.WithMountedSecret(secretsRoot+"/kubeconfig", a.kubeconfig)
		args = append(args, "--kubeconfig", secretsRoot+"/kubeconfig")
	}
	if a.username != "" {
		c = c.WithEnvVariable("MODELCI_REGISTRY_USERNAME", a.username)
	}
	if a.password != nil {
		c = c.WithSecretVariable("MODELCI_REGISTRY_PASSWORD", a.password)
	}
	var routes []string
	seen := map[int]string{}
	for _, t := range []struct {
		alias string
		svc   *dagger.Service
	}{{"kubernetes", a.apiServer}, {"registry", a.registry}} {
		if t.svc == nil {
			continue
		}
		ports, err := t.svc.Ports(ctx)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the %s tunnel's ports: %w", t.alias, err)
		}
		for _, p := range ports {
			n, err := p.Port(ctx)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("the %s tunnel's ports: %w", t.alias, err)
			}
			if other, ok := seen[n]; ok {
				return nil, nil, nil, fmt.Errorf("the %s and %s tunnels both use port %d", other, t.alias, n)
			}
			seen[n] = t.alias
			routes = append(routes, "--listen", fmt.Sprintf("127.0.0.1:%d=%s:%d", n, t.alias, n))
		}
		c = c.WithServiceBinding(t.alias, t.svc)
	}
	return c, routes, args, nil
}

// exitMeanings are modelci's exit codes (ARCHITECTURE.md, "Exit codes").
var exitMeanings = map[int]string{1: "failed", 2: "usage error", 3: "refused", 4: "held for approval"}

// runCLI runs `modelci ARGS` in c under `stage forward` with routes, and
// returns its stdout. A non-zero exit is an error with modelci's stderr.
func runCLI(ctx context.Context, c *dagger.Container, routes, args []string) (string, error) {
	argv := append(append([]string{cliBin, "stage", "forward"}, routes...), "--", cliBin)
	r := c.WithExec(append(argv, args...), dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := r.ExitCode(ctx)
	if err != nil {
		return "", fmt.Errorf("modelci %s: %w", args[0], err)
	}
	out, err := r.Stdout(ctx)
	if err != nil {
		return "", fmt.Errorf("modelci %s: %w", args[0], err)
	}
	if code == 0 {
		return out, nil
	}
	stderr, err := r.Stderr(ctx)
	if err != nil {
		return "", fmt.Errorf("modelci %s: exit %d: %w", args[0], code, err)
	}
	meaning := exitMeanings[code]
	if meaning == "" {
		meaning = "failed"
	}
	// The end of stderr says why; progress lines come before it.
	stderr = strings.TrimSpace(stderr)
	if len(stderr) > 4000 {
		stderr = "…" + stderr[len(stderr)-4000:]
	}
	return "", fmt.Errorf("modelci %s %s (exit %d):\n%s", args[0], meaning, code, stderr)
}

// ReleaseResult is what a release did.
type ReleaseResult struct {
	// The gate's verdict: PASS, FAIL or INCONCLUSIVE.
	Verdict string
	// The model version.
	Version string
	// The image digest (empty when the gate refused).
	Digest string
	// The published reference, REPOSITORY@sha256:… (empty when not published).
	Ref string
	// The model directory's digest, as `modelci run` records it.
	ModelDigest string
	// The signature tag (empty when not signed).
	Signature string
	// The gate report and what was done, in Markdown for a job summary.
	Summary string
	// 0, 3 or 4, as modelci's exit codes.
	ExitCode int
	// All of the above as one JSON object with snake_case keys and a schema (modelci.dev/dagger-release/v1), for a workflow step to parse with jq.
	Json string
}

// releaseSchema versions ReleaseResult.Json.
const releaseSchema = "modelci.dev/dagger-release/v1"

// releaseJSON is ReleaseResult's JSON document: jq, which the workflows
// read it with, is case-sensitive.
type releaseJSON struct {
	Schema      string `json:"schema"`
	Verdict     string `json:"verdict"`
	Version     string `json:"version"`
	Digest      string `json:"digest"`
	Ref         string `json:"ref"`
	ModelDigest string `json:"model_digest"`
	Signature   string `json:"signature"`
	Summary     string `json:"summary"`
	ExitCode    int    `json:"exit_code"`
}

// Release runs the whole pipeline: train, evaluate and gate; then, unless
// the gate refused, build the image, publish it (with an address), sign it
// (with a key or an OIDC token) and deploy it (with a kubeconfig). A spec
// whose gate compares with an environment's champion (gate.baseline.from)
// gates against the champion `modelci run` would find: the release the
// environment's cluster runs (through kubeconfig, and the apiServer and
// registry tunnels when they are on the caller's host), verified, with its
// signed metrics. Without a kubeconfig or a baseline, or when the
// environment cannot be reached, the release stops with a named error
// before anything is built.
//
// +cache="never"
func (m *Modelci) Release(
	ctx context.Context,
	// The project: modelci.yaml, its data and trainer code.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci", "**/__pycache__", "**/*.test"]
	source *dagger.Directory,
	// The spec file, relative to source.
	// +default="modelci.yaml"
	spec string,
	// Give the trainer every GPU of the engine's host.
	// +optional
	gpu bool,
	// The champion's metrics.json, for a paired comparison (default, with gate.baseline.from: the environment's champion, found through kubeconfig).
	// +optional
	baseline *dagger.File,
	// Repository to push to, HOST[:PORT]/PATH (default: build only).
	// +optional
	address string,
	// A registry on the caller's host (tcp://localhost:PORT), reached through this tunnel.
	// +optional
	registry *dagger.Service,
	// Registry user name.
	// +optional
	username string,
	// Registry password or token.
	// +optional
	password *dagger.Secret,
	// cosign private key (PEM).
	// +optional
	key *dagger.Secret,
	// The key's password.
	// +optional
	keyPassword *dagger.Secret,
	// OIDC identity token for keyless signing.
	// +optional
	oidcToken *dagger.Secret,
	// A kubeconfig: deploy after publishing; with gate.baseline.from, also where the environment's champion is found (its context is the environment's).
	// +optional
	kubeconfig *dagger.Secret,
	// The kubeconfig context.
	// +optional
	kubeContext string,
	// The namespace to deploy to.
	// +default="models"
	namespace string,
	// cosign public key for verification before deploying.
	// +optional
	publicKey *dagger.File,
	// An API server on the caller's host (tcp://127.0.0.1:PORT), reached through this tunnel: it answers at 127.0.0.1:PORT in the deploy step too, so the kubeconfig works unchanged.
	// +optional
	apiServer *dagger.Service,
	// Image creation time in seconds since the Unix epoch, as SOURCE_DATE_EPOCH.
	// +optional
	created int,
	// The training code's repository, for the SLSA provenance (the workflow passes $GITHUB_SERVER_URL/$GITHUB_REPOSITORY, as `modelci run` records there).
	// +optional
	sourceUri string,
	// The training code's git commit, for the SLSA provenance (the workflow passes $GITHUB_SHA): source has no .git, so without it the provenance names no source revision.
	// +optional
	sourceRevision string,
) (*ReleaseResult, error) {
	p, err := m.loadProject(ctx, source, spec)
	if err != nil {
		return nil, err
	}
	res := &ReleaseResult{Version: p.plan.Model.Version}
	started := time.Now().UTC()
	var steps []string
	trained, err := m.train(ctx, p, "", nil, gpu)
	if err != nil {
		return nil, err
	}
	if res.ModelDigest, err = m.treeDigest(ctx, trained.Directory("model")); err != nil {
		return nil, err
	}
	metrics, predictions, err := m.evaluate(ctx, p, trained, "", nil)
	if err != nil {
		return nil, err
	}
	st, err := m.stageContainer(ctx)
	if err != nil {
		return nil, err
	}
	baselineDigest := ""
	if baseline == nil && p.plan.Gate.BaselineFrom != "" && kubeconfig != nil {
		var found string
		baseline, baselineDigest, found, err = m.champion(ctx, p, st, metrics,
			access{kubeconfig: kubeconfig, apiServer: apiServer, registry: registry, username: username, password: password})
		if err != nil {
			return nil, err
		}
		steps = append(steps, found)
	}
	g, err := m.gate(ctx, p.withSource(st), []string{"gate", "--spec", p.specFile()}, metrics, baseline)
	if err != nil {
		return nil, err
	}
	res.Verdict, res.ExitCode = g.Verdict, g.ExitCode
	if g.ExitCode != 3 {
		out, err := m.image(ctx, p, trained, created)
		if err != nil {
			return nil, err
		}
		var img imageInfo
		if err := decodeFile(ctx, out.File("image.json"), &img); err != nil {
			return nil, err
		}
		res.Digest = img.Digest
		steps = append(steps, fmt.Sprintf("- built `%s` (tag `%s`)", img.Digest, img.Tag))
		smoke, err := m.smoke(ctx, p, st, out, predictions)
		if err != nil {
			return nil, err
		}
		steps = append(steps, "- smoke-tested: the image served every test row as evaluated")
		if address != "" {
			if res.Ref, err = m.publish(ctx, out, address, registry, username, password, false); err != nil {
				return nil, err
			}
			steps = append(steps, fmt.Sprintf("- published `%s`", res.Ref))
			if key != nil || oidcToken != nil {
				attest, err := m.predicates(p, st, metrics, baseline, baselineDigest, smoke, started, sourceUri, sourceRevision)
				if err != nil {
					return nil, err
				}
				sig, err := m.sign(ctx, once(st), res.Ref, registry, key, keyPassword, oidcToken, attest)
				if err != nil {
					return nil, err
				}
				// The signature tag names the registry as the caller does,
				// not by the tunnel's inner name.
				res.Signature = sig
				if registry != nil {
					res.Signature = untunnel(sig, address)
				}
				steps = append(steps, fmt.Sprintf("- signed: `%s`", res.Signature))
			}
			if kubeconfig != nil {
				out, err := m.deploy(ctx, source, spec, res.Ref, kubeContext, namespace, "", publicKey,
					access{kubeconfig: kubeconfig, apiServer: apiServer, registry: registry, username: username, password: password})
				if err != nil {
					return nil, err
				}
				steps = append(steps, fmt.Sprintf("- deployed to `%s`: %s", namespace, strings.TrimSpace(out)))
			}
		}
	} else {
		steps = append(steps, "- the gate refused the model: nothing was built")
	}
	res.Summary = fmt.Sprintf("## %s %s: %s\n\n%s\n\n%s", p.plan.Model.Name, res.Version, res.Verdict, strings.Join(steps, "\n"), g.Report)
	b, err := json.Marshal(releaseJSON{Schema: releaseSchema, Verdict: res.Verdict, Version: res.Version, Digest: res.Digest,
		Ref: res.Ref, ModelDigest: res.ModelDigest, Signature: res.Signature, Summary: res.Summary, ExitCode: res.ExitCode})
	if err != nil {
		return nil, fmt.Errorf("encode the release result: %w", err)
	}
	res.Json = string(b)
	return res, nil
}

// smoke runs `stage smoke` (pipeline.Smoke, as `modelci run` does) on the
// image step's output: the image's server, started from its layers in the
// step's container, must answer every test row as the evaluator predicted
// it. It returns smoke.json, for the provenance.
func (m *Modelci) smoke(ctx context.Context, p *project, st *dagger.Container, image *dagger.Directory, predictions *dagger.File) (*dagger.File, error) {
	split, err := m.split(ctx, p)
	if err != nil {
		return nil, err
	}
	const in = "/modelci/in"
	f := stage(p.withSource(st).
		WithMountedDirectory(in+"/image", image).
		WithMountedFile(in+"/test.csv", split.File("test/test.csv")).
		WithMountedFile(in+"/predictions.json", predictions),
		"smoke", "--spec", p.specFile(), "--image", in+"/image", "--test", in+"/test.csv",
		"--predictions", in+"/predictions.json", "--out", stepOut).File(path.Join(stepOut, "smoke.json"))
	if _, err := f.Sync(ctx); err != nil {
		return nil, fmt.Errorf("smoke: %w", err)
	}
	return f, nil
}

// champion finds gate.baseline.from's champion with `stage champion`, as
// `modelci run` does: the environment's live release, verified, and its
// signed metrics (re-scored on the candidate's test split when it was
// scored on another). It returns the baseline (nil when the environment
// has no release yet: no comparison, as `modelci run` does), the digest
// the gate attestation names, and a line for the summary. The step runs
// on every call: the champion is the cluster's state now.
func (m *Modelci) champion(ctx context.Context, p *project, st *dagger.Container, metrics *dagger.File, a access) (*dagger.File, string, string, error) {
	split, err := m.split(ctx, p)
	if err != nil {
		return nil, "", "", err
	}
	const in = "/modelci/in"
	c := once(p.withSource(st)).
		WithMountedFile(in+"/metrics.json", metrics).
		WithMountedFile(in+"/test.csv", split.File("test/test.csv"))
	args := []string{"stage", "champion", "--spec", p.specFile(), "--metrics", in + "/metrics.json",
		"--test", in + "/test.csv", "--out", stepOut}
	c, routes, args, err := a.apply(ctx, c, args)
	if err != nil {
		return nil, "", "", err
	}
	argv := append(append([]string{cliBin, "stage", "forward"}, routes...), "--", cliBin)
	out := c.WithExec(append(argv, args...)).Directory(stepOut)
	var res struct {
		Schema   string `json:"schema"`
		Found    bool   `json:"found"`
		Baseline struct {
			Source   string `json:"source"`
			Digest   string `json:"digest"`
			Image    string `json:"image"`
			Version  string `json:"version"`
			Rescored bool   `json:"rescored"`
		} `json:"baseline"`
	}
	if err := decodeFile(ctx, out.File("champion.json"), &res); err != nil {
		return nil, "", "", fmt.Errorf("the champion of %s: %w", p.plan.Gate.BaselineFrom, err)
	}
	if res.Schema != championSchema {
		return nil, "", "", fmt.Errorf("the champion of %s: champion.json schema %q, want %s: modelciBinary is from another modelci", p.plan.Gate.BaselineFrom, res.Schema, championSchema)
	}
	if !res.Found {
		return nil, "", fmt.Sprintf("- `%s` runs no release yet: no baseline comparison", p.plan.Gate.BaselineFrom), nil
	}
	line := fmt.Sprintf("- baseline: the champion of `%s`, %s `%s`", p.plan.Gate.BaselineFrom, res.Baseline.Version, res.Baseline.Image)
	if res.Baseline.Rescored {
		line += " (re-scored on this test split)"
	}
	return out.File("baseline.json"), res.Baseline.Digest, line, nil
}

// championSchema versions `stage champion`'s champion.json.
const championSchema = "modelci.dev/stage-champion/v1"

// untunnel rewrites a reference through the registry tunnel
// (registry:PORT/PATH…) to the address's host, as the caller knows it.
func untunnel(ref, address string) string {
	host, _, _ := strings.Cut(address, "/")
	if rest, ok := strings.CutPrefix(ref, "registry:"); ok {
		if _, path, ok := strings.Cut(rest, "/"); ok {
			return host + "/" + path
		}
	}
	return ref
}

// predicates are the predicates `modelci run` attests for a signed image
// (the gate verdict, SLSA provenance), made by `stage predicates`, and the
// metrics it attaches.
func (m *Modelci) predicates(p *project, st *dagger.Container, metrics, baseline *dagger.File, baselineDigest string, smoke *dagger.File, started time.Time, sourceURI, sourceRevision string) (*dagger.Directory, error) {
	c, args := withMetrics(p.withSource(st), []string{"predicates", "--spec", p.specFile()}, metrics, baseline)
	args = append(args, "--started", started.Format(time.RFC3339Nano), "--out", stepOut)
	if smoke != nil {
		c = c.WithMountedFile("/modelci/in/smoke.json", smoke)
		args = append(args, "--smoke", "/modelci/in/smoke.json")
	}
	if baselineDigest != "" {
		args = append(args, "--baseline-digest", baselineDigest)
	}
	if sourceRevision != "" {
		args = append(args, "--source-uri", sourceURI, "--source-revision", sourceRevision)
	}
	return stage(c, args...).
		Directory(stepOut).WithFile("metrics.json", metrics), nil
}

// Test runs modelci's unit tests in a container with the Go toolchain.
func (m *Modelci) Test(
	ctx context.Context,
	// modelci's source.
	// +defaultPath="/"
	// +ignore=[".git", "**/.modelci"]
	source *dagger.Directory,
	// Only tests matching this -run pattern.
	// +optional
	run string,
	// The packages to test.
	// +default="./..."
	pkg string,
) (string, error) {
	b, err := m.goBuilder(ctx)
	if err != nil {
		return "", err
	}
	args := []string{"go", "test", "-count=1"}
	if run != "" {
		args = append(args, "-run", run)
	}
	return b.WithMountedDirectory(srcDir, source).WithWorkdir(srcDir).
		WithExec(append(args, pkg)).Stdout(ctx)
}

// treeDigest is the model directory's digest as `modelci run` records it,
// computed by `stage digest` so that binary model files count byte for byte.
func (m *Modelci) treeDigest(ctx context.Context, d *dagger.Directory) (string, error) {
	st, err := m.stageContainer(ctx)
	if err != nil {
		return "", err
	}
	out, err := stage(st.WithMountedDirectory(modelMount, d), "digest", modelMount).Stdout(ctx)
	if err != nil {
		return "", fmt.Errorf("digest the model: %w", err)
	}
	return strings.TrimSpace(out), nil
}
