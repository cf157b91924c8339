package modelgate

import (
	"fmt"
	"regexp"
	"strings"

	version "github.com/hashicorp/go-version"
)

// semverPattern is the grammar of semver.org 2.0.0 (its suggested regular
// expression): exactly MAJOR.MINOR.PATCH, no leading zeros, no leading v.
// go-version alone also accepts "v1.2", which is not a model version.
var semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// ParseVersion parses a model version: strict semver without a leading v
// (ErrInvalidVersion otherwise).
func ParseVersion(s string) (*version.Version, error) {
	if !semverPattern.MatchString(s) {
		return nil, fmt.Errorf("model version %q: %w", s, ErrInvalidVersion)
	}
	v, err := version.NewSemver(s)
	if err != nil {
		return nil, fmt.Errorf("model version %q: %w: %w", s, ErrInvalidVersion, err)
	}
	return v, nil
}

// Tag is the image tag for a model version: "+" is not allowed in tags,
// so build metadata is written after "_" (1.0.0+build.5 → 1.0.0_build.5).
func Tag(v string) string {
	return strings.ReplaceAll(v, "+", "_")
}

// Greater reports whether candidate is a greater version than champion by
// semver precedence (pre-releases are lower than their release; build
// metadata does not count, so 1.0.0+a is not greater than 1.0.0+b). An
// empty champion means there is none: any valid candidate is greater.
func Greater(candidate, champion string) (bool, error) {
	c, err := ParseVersion(candidate)
	if err != nil {
		return false, err
	}
	if champion == "" {
		return true, nil
	}
	ch, err := ParseVersion(champion)
	if err != nil {
		return false, fmt.Errorf("champion: %w", err)
	}
	return c.GreaterThan(ch), nil
}

// CheckConstraint checks v against an environment's constraint such as
// ">= 1.0, < 2.0", with go-version's semantics: a pre-release satisfies
// only constraints that name a pre-release of the same MAJOR.MINOR.PATCH.
// It returns ErrConstraint when v does not satisfy it.
func CheckConstraint(v, constraint string) error {
	ver, err := ParseVersion(v)
	if err != nil {
		return err
	}
	cs, err := version.NewConstraint(constraint)
	if err != nil {
		return fmt.Errorf("constraint %q: %w: %w", constraint, ErrInvalidConstraint, err)
	}
	if !cs.Check(ver) {
		return fmt.Errorf("model version %s, constraint %q: %w", v, constraint, ErrConstraint)
	}
	return nil
}
