package spec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/spec"
)

const envSpec = validSpec + `environments:
  staging: {repository: "127.0.0.1:5000/staging/diabetes", context: kind, constraint: ">= 0.1.0", require: INCONCLUSIVE}
  prod:
    repository: 127.0.0.1:5000/prod/diabetes
    namespace: models-prod
    constraint: ">= 1.0, < 2.0"
    strategy: canary
`

func TestEnvironments(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(envSpec))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.EnvironmentNames(); strings.Join(got, ",") != "prod,staging" {
		t.Fatalf("EnvironmentNames = %v", got)
	}
	tests := []struct {
		name string
		want spec.Environment
	}{
		{"staging", spec.Environment{Name: "staging", Repository: "127.0.0.1:5000/staging/diabetes", Context: "kind", Namespace: "staging", Constraint: ">= 0.1.0", Require: "INCONCLUSIVE", Strategy: "rolling"}},
		{"prod", spec.Environment{Name: "prod", Repository: "127.0.0.1:5000/prod/diabetes", Namespace: "models-prod", Constraint: ">= 1.0, < 2.0", Require: "PASS", Strategy: "canary"}},
	}
	for _, tt := range tests {
		got, err := s.Environment(tt.name)
		if err != nil || got != tt.want {
			t.Errorf("Environment(%s) = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	if _, err := s.Environment("qa"); !errors.Is(err, spec.ErrUnknownEnvironment) {
		t.Fatalf("Environment(qa) error = %v, want ErrUnknownEnvironment", err)
	}
}

func TestEnvironmentErrors(t *testing.T) {
	tests := []struct {
		name, env string
		want      error
		message   string
	}{
		{"unknown key", `{repository: r.io/a, constraints: ">= 1"}`, strictyaml.ErrUnknownKey, "environments.prod.constraints: unknown key"},
		{"wrong type", `{repository: r.io/a, strategy: [rolling]}`, strictyaml.ErrType, "environments.prod.strategy: want a string"},
		{"no repository", `{namespace: prod}`, spec.ErrSpec, "environments.prod.repository: invalid spec: required"},
		{"bad repository", `{repository: "r.io/A B"}`, spec.ErrSpec, "environments.prod.repository"},
		{"bad constraint", `{repository: r.io/a, constraint: "> one"}`, spec.ErrSpec, "environments.prod.constraint"},
		{"bad require", `{repository: r.io/a, require: FAIL}`, spec.ErrSpec, `environments.prod.require: invalid spec: "FAIL" is not PASS or INCONCLUSIVE`},
		{"bad strategy", `{repository: r.io/a, strategy: blue-green}`, spec.ErrSpec, `environments.prod.strategy: invalid spec: "blue-green" is not rolling or canary`},
		{"bad namespace", `{repository: r.io/a, namespace: Prod}`, spec.ErrSpec, "environments.prod.namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec+"environments:\n  prod: "+tt.env+"\n"))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error = %v, want %v containing %q", err, tt.want, tt.message)
			}
		})
	}
}
