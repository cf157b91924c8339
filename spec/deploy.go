package spec

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/deploy"
)

// decodeDeploy decodes the deploy: section over its defaults.
func (s *Spec) decodeDeploy(n *yaml.Node) error {
	s.HasDeploy = n.Kind != 0
	cfg, err := deploy.DecodeConfig(s.File, n)
	if err != nil {
		return err
	}
	s.Deploy = cfg
	return nil
}

func (s *Spec) validateDeploy() []error {
	cfg := s.Deploy
	var errs []error
	if cfg.Enabled && cfg.Context == "" {
		errs = append(errs, fmt.Errorf("%s: deploy.context: %w: deploy.enabled needs a kubeconfig context named explicitly (modelci never uses whatever context is current)", s.File, ErrSpec))
	}
	if cfg.Enabled && s.Verify.Key == "" && s.Verify.CertificateIdentity == "" {
		errs = append(errs, fmt.Errorf("%s: verify: %w: deploy.enabled needs verify.key or verify.certificate_identity (images are verified before they deploy)", s.File, ErrSpec))
	}
	return errs
}

// Rollout is what `modelci deploy --spec FILE` reads: the deploy: and
// verify: sections, decoded, defaulted and validated as Load does them,
// with verify.key resolved against the file's directory. The rest of the
// file may be absent (a deploy-only file) but is still decoded strictly.
type Rollout struct {
	Deploy deploy.Config
	Verify VerifySpec
	// Gate is the gate: block when the file has one: the policy a deployed
	// image's gate attestation must have been made under.
	Gate *modelgate.Policy
	// File is the spec's path, for messages.
	File string
}

// rolloutFile is a spec whose every section but apiVersion is optional.
type rolloutFile struct {
	APIVersion   string                 `yaml:"apiVersion" required:"true"`
	Model        yaml.Node              `yaml:"model"`
	Data         yaml.Node              `yaml:"data"`
	Train        yaml.Node              `yaml:"train"`
	Evaluate     yaml.Node              `yaml:"evaluate"`
	Gate         *modelgate.Policy      `yaml:"gate"`
	Image        yaml.Node              `yaml:"image"`
	Output       yaml.Node              `yaml:"output"`
	Sign         yaml.Node              `yaml:"sign"`
	Verify       VerifySpec             `yaml:"verify"`
	Deploy       yaml.Node              `yaml:"deploy"`
	Environments map[string]Environment `yaml:"environments"`
}

// LoadRollout reads the deploy: and verify: sections of the spec at path.
func LoadRollout(path string) (*Rollout, error) {
	name, dir, b, err := read(path)
	if err != nil {
		return nil, err
	}
	var f rolloutFile
	if err := strictyaml.Decode(name, b, &f); err != nil {
		return nil, err
	}
	// The same checks Load makes of these sections.
	s := &Spec{APIVersion: f.APIVersion, Verify: f.Verify, File: name, Dir: dir}
	if err := s.decodeDeploy(&f.Deploy); err != nil {
		return nil, err
	}
	var errs []error
	if s.APIVersion != APIVersion {
		errs = append(errs, fmt.Errorf("%s: apiVersion: %w: %q is not %q", name, ErrSpec, s.APIVersion, APIVersion))
	}
	errs = append(errs, s.validateVerify()...)
	errs = append(errs, s.validateDeploy()...)
	if f.Gate != nil {
		// Decoded into a zero value: the defaults DecodePolicy starts from.
		f.Gate.ApplyDefaults()
		f.Gate.Normalize()
		if err := f.Gate.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: gate: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.resolvePaths()
	return &Rollout{Deploy: s.Deploy, Verify: s.Verify, Gate: f.Gate, File: name}, nil
}
