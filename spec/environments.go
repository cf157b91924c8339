package spec

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	goversion "github.com/hashicorp/go-version"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/oci"
)

// ErrUnknownEnvironment: a command named an environment the spec's
// environments: section does not define.
var ErrUnknownEnvironment = errors.New("unknown environment")

// Environment strategies (the deploy strategies).
const (
	StrategyRolling = "rolling"
	StrategyCanary  = "canary"
)

// Environment is one entry of environments: in modelci.yaml: where a
// promoted model lives (its repository and cluster namespace) and what it
// must satisfy to get there.
type Environment struct {
	// Name is the key under environments:. Not part of the entry.
	Name string `yaml:"-"`
	// Repository is HOST[:PORT]/PATH the environment pulls from.
	Repository string `yaml:"repository"`
	// Context is the kubeconfig context of the environment's cluster.
	Context string `yaml:"context"`
	// Namespace defaults to the environment's name.
	Namespace string `yaml:"namespace"`
	// Constraint is a go-version constraint such as ">= 1.0, < 2.0".
	Constraint string `yaml:"constraint"`
	// Require is the weakest gate verdict accepted without a person's
	// approval: PASS (default) or INCONCLUSIVE. FAIL is never accepted.
	Require string `yaml:"require"`
	// Strategy is rolling (default) or canary.
	Strategy string `yaml:"strategy"`
}

// Environment returns the environment called name with its defaults
// applied; an undefined one is ErrUnknownEnvironment.
func (s *Spec) Environment(name string) (Environment, error) {
	e, ok := s.Environments[name]
	if !ok {
		have := s.EnvironmentNames()
		return Environment{}, fmt.Errorf("%s: environment %q: %w (defined: %v)", s.File, name, ErrUnknownEnvironment, have)
	}
	return e, nil
}

// EnvironmentNames returns the defined environments' names, sorted.
func (s *Spec) EnvironmentNames() []string {
	names := make([]string, 0, len(s.Environments))
	for n := range s.Environments {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// defaultEnvironments fills each entry's name and defaults.
func (s *Spec) defaultEnvironments() {
	for name, e := range s.Environments {
		e.Name = name
		if e.Namespace == "" {
			e.Namespace = name
		}
		if e.Require == "" {
			e.Require = string(modelgate.Pass)
		}
		if e.Strategy == "" {
			e.Strategy = StrategyRolling
		}
		s.Environments[name] = e
	}
}

// validateEnvironments checks every entry, naming the key at fault.
func (s *Spec) validateEnvironments() []error {
	var errs []error
	for _, name := range s.EnvironmentNames() {
		e := s.Environments[name]
		bad := func(key, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: environments.%s.%s: %w: %s", s.File, name, key, ErrSpec, fmt.Sprintf(format, args...)))
		}
		if len(name) > 63 || !dns1123Label.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: environments.%s: %w: the name is not a DNS-1123 label", s.File, name, ErrSpec))
		}
		if e.Repository == "" {
			bad("repository", "required: HOST[:PORT]/PATH the environment pulls from")
		} else if err := oci.CheckRepository(e.Repository); err != nil {
			bad("repository", "%v", err)
		}
		if len(e.Namespace) > 63 || !dns1123Label.MatchString(e.Namespace) {
			bad("namespace", "%q is not a DNS-1123 label", e.Namespace)
		}
		if e.Constraint != "" {
			if _, err := goversion.NewConstraint(e.Constraint); err != nil {
				bad("constraint", "%q: %v", e.Constraint, err)
			}
		}
		if !slices.Contains([]string{string(modelgate.Pass), string(modelgate.Inconclusive)}, e.Require) {
			bad("require", "%q is not PASS or INCONCLUSIVE", e.Require)
		}
		if e.Strategy != StrategyRolling && e.Strategy != StrategyCanary {
			bad("strategy", "%q is not rolling or canary", e.Strategy)
		}
	}
	return errs
}

// validateBaselineFrom checks gate.baseline.from: an environment of the
// spec, with an explicit kubeconfig context (the champion is what its
// cluster runs) and a verify: block (the champion and its metrics are
// verified before they are trusted).
func (s *Spec) validateBaselineFrom() []error {
	from := s.Gate.Baseline.From
	if from == "" {
		return nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: gate.baseline.from: %w: %s", s.File, ErrSpec, fmt.Sprintf(format, args...))
	}
	e, ok := s.Environments[from]
	if !ok {
		return []error{bad("%q is not an environment (defined: %v)", from, s.EnvironmentNames())}
	}
	var errs []error
	if e.Context == "" {
		errs = append(errs, bad("environments.%s.context is empty: the champion is what that context's cluster runs, named explicitly", from))
	}
	if s.Verify.Key == "" && s.Verify.CertificateIdentity == "" {
		errs = append(errs, bad("needs verify.key or verify.certificate_identity (the champion's signed metrics are verified)"))
	}
	return errs
}
