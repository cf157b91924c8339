// Package spec reads modelci.yaml v1: decoded strictly and fully at load
// (training parameters typed, the deploy: and verify: blocks defaulted and
// validated, paths resolved against the spec's directory), so the CLI, the
// pipeline and the Dagger module's steps read one value and never the file.
package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/train"
)

// APIVersion is the only spec version this release reads.
const APIVersion = "modelci.dev/v1"

// FileName is the spec's default file name inside a project directory.
const FileName = "modelci.yaml"

// ErrSpec is wrapped by every validation error of a spec (decoding errors
// wrap strictyaml's sentinels instead).
var ErrSpec = errors.New("invalid spec")

// ErrNotSupported marks a spec section or value that a later release handles.
var ErrNotSupported = errors.New("not supported yet")

// Spec is modelci.yaml v1 (docs/spec.md documents it field by field).
type Spec struct {
	APIVersion string           `yaml:"apiVersion" required:"true"`
	Model      ModelSpec        `yaml:"model" required:"true"`
	Data       DataSpec         `yaml:"data" required:"true"`
	Train      TrainSpec        `yaml:"train"`
	Evaluate   EvaluateSpec     `yaml:"evaluate"`
	Gate       modelgate.Policy `yaml:"gate" required:"true"`
	Image      ImageSpec        `yaml:"image"`
	Smoke      SmokeSpec        `yaml:"smoke"`
	Output     string           `yaml:"output"`

	Sign   SignSpec   `yaml:"sign"`
	Verify VerifySpec `yaml:"verify"`

	// Deploy is the deploy: section with its defaults (deploy.go).
	Deploy deploy.Config `yaml:"-"`
	// HasDeploy says whether the file has a deploy: section.
	HasDeploy bool `yaml:"-"`

	// Environments are the promotion targets by name (environments.go).
	Environments map[string]Environment `yaml:"environments"`

	// Dir is the directory relative paths in the spec resolve against
	// (the spec file's directory). Not part of the file.
	Dir string `yaml:"-"`
	// File is the spec's path, for messages.
	File string `yaml:"-"`
}

// ModelSpec names and versions the model.
type ModelSpec struct {
	Name    string `yaml:"name" json:"name" required:"true"`
	Version string `yaml:"version" json:"version" required:"true"`
}

// DataSpec says where the data set is and how to split it.
type DataSpec struct {
	Path         string   `yaml:"path" required:"true"`
	Target       string   `yaml:"target" required:"true"`
	TestFraction *float64 `yaml:"test_fraction"`
	Seed         *int64   `yaml:"seed"`
}

// TrainSpec chooses the built-in trainer or an external command.
type TrainSpec struct {
	Builtin string   `yaml:"builtin"`
	Command []string `yaml:"command"`
	// Format is the model file the trainer writes and modelci's runtime
	// serves: linear (model.json) or onnx (model.onnx); empty with
	// image.base, a serving image of the user's.
	Format string `yaml:"format"`
	// Params is train.params as JSON values, the built-in trainer's over
	// its defaults: what metrics.json records and MODELCI_PARAMS carries.
	Params map[string]any `yaml:"-"`
	// Linear is train.params for the built-in linear trainer, typed.
	Linear train.Params `yaml:"-"`
	Image  string       `yaml:"image"`
	GPU    bool         `yaml:"gpu"`
	// Env names variables passed through from modelci's environment to
	// the command; it otherwise gets a clean one (trainer contract v1).
	// Secrets modelci uses and MODELCI_* names are refused
	// (train.CheckPassEnv).
	Env []string `yaml:"env"`
	// Workdir runs the command in this directory, in place, instead of a
	// staging copy of the project; absolute once loaded.
	Workdir string `yaml:"workdir"`
	// Timeout is a Go duration (30m, 2h) after which training is stopped:
	// an external trainer is killed with its process group. Empty: none.
	Timeout string `yaml:"timeout"`
	// Runner is RunnerLocal (the default: this machine) or
	// RunnerKubernetes (a Job on Kubernetes, train.go).
	Runner     string          `yaml:"runner"`
	Kubernetes TrainKubernetes `yaml:"kubernetes"`
}

// TimeoutDuration is train.timeout, parsed (validated at load); 0: none.
func (t TrainSpec) TimeoutDuration() time.Duration { return duration(t.Timeout) }

// duration parses a validated timeout; 0 when empty.
func duration(s string) time.Duration {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	return 0
}

// ErrDuration means a timeout is not a positive Go duration; it comes
// with ErrSpec.
var ErrDuration = errors.New("not a positive Go duration")

// file is the spec as written: the sections decoded later (train.params,
// deploy) stay YAML nodes so that their errors name their lines.
type file struct {
	Spec  `yaml:",inline"`
	Train struct {
		TrainSpec `yaml:",inline"`
		Params    yaml.Node `yaml:"params"`
	} `yaml:"train"`
	Deploy yaml.Node `yaml:"deploy"`
}

// EvaluateSpec names an external evaluator; built-in models need none.
type EvaluateSpec struct {
	Command []string `yaml:"command"`
	// Env and Workdir are train.env and train.workdir for the evaluator.
	Env     []string `yaml:"env"`
	Workdir string   `yaml:"workdir"`
	// Timeout is train.timeout for the evaluator (the candidate's, and a
	// champion's re-scoring). Empty: none.
	Timeout string `yaml:"timeout"`
}

// TimeoutDuration is evaluate.timeout, parsed (validated at load); 0: none.
func (e EvaluateSpec) TimeoutDuration() time.Duration { return duration(e.Timeout) }

// ImageSpec describes the serving image.
type ImageSpec struct {
	Repository string   `yaml:"repository"`
	Base       string   `yaml:"base"`
	Platforms  []string `yaml:"platforms"`
	Latest     bool     `yaml:"latest"`
	// Entrypoint and Cmd replace a base image's own (a serving image of the
	// user's: TorchServe, Triton, vLLM…); modelci adds only the model.
	Entrypoint []string `yaml:"entrypoint"`
	Cmd        []string `yaml:"cmd"`
}

// SmokeSpec is the smoke test of an image modelci's runtime does not serve
// (image.base): a command run against the built image, whose exit status
// decides.
type SmokeSpec struct {
	Command []string `yaml:"command"`
	// Timeout is a Go duration (default 5m).
	Timeout string `yaml:"timeout"`
}

// DefaultSmokeTimeout bounds smoke.command.
const DefaultSmokeTimeout = 5 * time.Minute

// TimeoutDuration is smoke.timeout, parsed (validated at load).
func (s SmokeSpec) TimeoutDuration() time.Duration {
	if d, err := time.ParseDuration(s.Timeout); err == nil && d > 0 {
		return d
	}
	return DefaultSmokeTimeout
}

// Scratch says whether the image is modelci's own runtime plus the model
// (image.base empty or scratch), so that modelci serves it.
func (i ImageSpec) Scratch() bool { return i.Base == "" || i.Base == "scratch" }

// Defaults for optional fields.
const (
	DefaultTestFraction = 0.2
	DefaultSeed         = 42
	DefaultOutput       = ".modelci"
	BuiltinLinear       = "linear"
)

// Load reads, decodes strictly, defaults and validates a spec file.
func Load(path string) (*Spec, error) {
	name, dir, b, err := read(path)
	if err != nil {
		return nil, err
	}
	return Parse(name, dir, b)
}

// read returns the spec file's name (which labels errors), its absolute
// directory (which anchors relative paths) and its bytes.
func read(path string) (name, dir string, b []byte, err error) {
	if b, err = os.ReadFile(path); err != nil {
		return "", "", nil, fmt.Errorf("read spec: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", nil, fmt.Errorf("read spec: %w", err)
	}
	return filepath.Base(path), filepath.Dir(abs), b, nil
}

// Parse decodes a spec from b; name labels errors and dir anchors
// relative paths.
func Parse(name, dir string, b []byte) (*Spec, error) {
	// Start from the gate's defaults so that an explicit value, even zero,
	// is validated rather than defaulted.
	f := file{Spec: Spec{Gate: modelgate.DefaultPolicy()}}
	if err := strictyaml.Decode(name, b, &f); err != nil {
		return nil, err
	}
	s := &f.Spec
	s.Train = f.Train.TrainSpec
	s.File, s.Dir = name, dir
	s.applyDefaults()
	if err := errors.Join(s.decodeParams(&f.Train.Params), s.decodeDeploy(&f.Deploy)); err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	s.resolvePaths()
	return s, nil
}

// resolvePaths makes the key files absolute, so that a command run from
// another directory reads the spec's keys, not its working directory's.
// data.path stays as written (run records show it); Path resolves it.
func (s *Spec) resolvePaths() {
	if s.Sign.Key != "" {
		s.Sign.Key = s.Path(s.Sign.Key)
	}
	if s.Verify.Key != "" {
		s.Verify.Key = s.Path(s.Verify.Key)
	}
	if s.Train.Workdir != "" {
		s.Train.Workdir = s.Path(s.Train.Workdir)
	}
	if s.Evaluate.Workdir != "" {
		s.Evaluate.Workdir = s.Path(s.Evaluate.Workdir)
	}
}

func (s *Spec) applyDefaults() {
	if s.Data.TestFraction == nil {
		f := DefaultTestFraction
		s.Data.TestFraction = &f
	}
	if s.Data.Seed == nil {
		seed := int64(DefaultSeed)
		s.Data.Seed = &seed
	}
	if s.Train.Builtin == "" && len(s.Train.Command) == 0 {
		s.Train.Builtin = BuiltinLinear
	}
	if s.Train.Builtin != "" && s.Train.Format == "" {
		s.Train.Format = model.FormatLinear
	}
	if s.Image.Base == "" {
		s.Image.Base = "scratch"
	}
	if len(s.Image.Platforms) == 0 {
		s.Image.Platforms = []string{"linux/amd64"}
	}
	if s.Output == "" {
		s.Output = DefaultOutput
	}
	s.defaultEnvironments()
	s.defaultTrainKubernetes()
	// The gate started from modelgate.DefaultPolicy (ParseSpec).
	s.Gate.Normalize()
}

// dns1123Label is Kubernetes' rule for a label: it names Deployments and
// image repositories.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func (s *Spec) validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w: %s", s.File, key, ErrSpec, fmt.Sprintf(format, args...)))
	}
	if s.APIVersion != APIVersion {
		bad("apiVersion", "%q is not %q", s.APIVersion, APIVersion)
	}
	if len(s.Model.Name) > 63 || !dns1123Label.MatchString(s.Model.Name) {
		bad("model.name", "%q is not a DNS-1123 label (lower-case letters, digits and '-', at most 63, starting and ending alphanumeric)", s.Model.Name)
	}
	if _, err := modelgate.ParseVersion(s.Model.Version); err != nil {
		bad("model.version", "%v", err)
	}
	if f := *s.Data.TestFraction; !(f > 0 && f < 1) {
		bad("data.test_fraction", "%v is not in (0, 1)", f)
	}
	switch {
	case s.Train.Builtin != "" && len(s.Train.Command) > 0:
		bad("train", "set builtin or command, not both")
	case s.Train.Builtin != "" && s.Train.Builtin != BuiltinLinear:
		bad("train.builtin", "%q is not a built-in trainer (have: %s)", s.Train.Builtin, BuiltinLinear)
	case len(s.Train.Command) > 0 && len(s.Evaluate.Command) == 0:
		bad("evaluate.command", "an external trainer needs an external evaluator (evaluator contract v1)")
	}
	errs = append(errs, s.validateFormat()...)
	errs = append(errs, s.checkDuration("train.timeout", s.Train.Timeout)...)
	errs = append(errs, s.checkDuration("evaluate.timeout", s.Evaluate.Timeout)...)
	errs = append(errs, validateCommandEnv(s.File, "train", len(s.Train.Command) > 0, s.Train.Env, s.Train.Workdir)...)
	errs = append(errs, validateCommandEnv(s.File, "evaluate", len(s.Evaluate.Command) > 0, s.Evaluate.Env, s.Evaluate.Workdir)...)
	errs = append(errs, s.validateRunner(false)...)
	if err := s.Gate.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s: gate: %w", s.File, err))
	}
	if s.Image.Repository != "" {
		if err := oci.CheckRepository(s.Image.Repository); err != nil {
			bad("image.repository", "%v", err)
		}
	}
	for i, p := range s.Image.Platforms {
		if !slices.Contains(supportedPlatforms, p) {
			bad(fmt.Sprintf("image.platforms[%d]", i), "%q is not one of %s", p, strings.Join(supportedPlatforms, ", "))
		}
	}
	errs = append(errs, s.validateSign()...)
	errs = append(errs, s.validateDeploy()...)
	errs = append(errs, s.validateEnvironments()...)
	errs = append(errs, s.validateBaselineFrom()...)
	return errors.Join(errs...)
}

// validateFormat checks that the model can ship before anything is
// trained: a format modelci's runtime serves (train.format) on a scratch
// image, or a serving image of the user's (image.base) that serves it.
func (s *Spec) validateFormat() []error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w: %s", s.File, key, ErrSpec, fmt.Sprintf(format, args...)))
	}
	f := s.Train.Format
	switch {
	case f != "" && !slices.Contains(model.Formats, f):
		bad("train.format", "%q is not a format modelci's runtime serves (have: %s); another format needs image.base, a serving image of yours", f, strings.Join(model.Formats, ", "))
	case s.Train.Builtin != "" && f != model.FormatLinear:
		bad("train.format", "the built-in %s trainer writes %s, not %q", s.Train.Builtin, model.FormatLinear, f)
	case f != "" && !s.Image.Scratch():
		bad("train.format", "%q is served by modelci's runtime on a scratch image; with image.base %q your image serves the model: drop one of them", f, s.Image.Base)
	case f == "" && s.Image.Scratch():
		bad("train.format", "an external trainer's model needs a format modelci's runtime serves (%s), or image.base with image.entrypoint: a serving image of yours", strings.Join(model.Formats, ", "))
	case f == "" && len(s.Image.Entrypoint) == 0 && len(s.Image.Cmd) == 0:
		bad("image.entrypoint", "image.base %q serves a model modelci cannot run: name how it starts (image.entrypoint and/or image.cmd)", s.Image.Base)
	}
	if s.Image.Scratch() && (len(s.Image.Entrypoint) > 0 || len(s.Image.Cmd) > 0) {
		bad("image.entrypoint", "modelci's runtime has its own entrypoint; image.entrypoint and image.cmd apply to image.base")
	}
	errs = append(errs, s.checkDuration("smoke.timeout", s.Smoke.Timeout)...)
	if (s.Smoke.Timeout != "" || len(s.Smoke.Command) > 0) && s.Image.Scratch() {
		bad("smoke", "modelci smoke-tests its own runtime itself; smoke.command applies to image.base images")
	}
	return errs
}

// checkDuration checks a timeout: empty, or a positive Go duration.
func (s *Spec) checkDuration(key, v string) []error {
	if v == "" {
		return nil
	}
	if d, err := time.ParseDuration(v); err != nil || d <= 0 {
		return []error{fmt.Errorf("%s: %s: %w: %q is %w (e.g. 30m, 2h)", s.File, key, ErrSpec, v, ErrDuration)}
	}
	return nil
}

// validateCommandEnv checks train.env and train.workdir (section "train"),
// or evaluate's: they need a command, and env names no secret.
func validateCommandEnv(file, section string, command bool, env []string, workdir string) []error {
	var errs []error
	if !command && (len(env) > 0 || workdir != "") {
		errs = append(errs, fmt.Errorf("%s: %s: %w: env and workdir apply to %s.command", file, section, ErrSpec, section))
	}
	for i, name := range env {
		if err := train.CheckPassEnv(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.env[%d]: %w: %w", file, section, i, ErrSpec, err))
		}
	}
	return errs
}

var supportedPlatforms = []string{"linux/amd64", "linux/arm64"}

// Path resolves a path from the spec against the spec's directory.
func (s *Spec) Path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}
