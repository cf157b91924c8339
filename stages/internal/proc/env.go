package proc

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// SecretEnv are the variables modelci reads secrets from (signing key
// passwords, registry credentials, OIDC tokens, telemetry headers). They are
// never passed to a trainer or an evaluator: the spec refuses them in
// train.env and evaluate.env, and Run refuses them in PassEnv. Every other
// MODELCI_* name is refused as well (CheckPassEnv). This list is the one
// place that knows them: add a variable here when modelci starts reading a
// new secret.
var SecretEnv = []string{
	"MODELCI_KEY_PASSWORD",
	"COSIGN_PASSWORD",
	"MODELCI_REGISTRY_PASSWORD",
	"MODELCI_REGISTRY_USERNAME",
	"SIGSTORE_ID_TOKEN",
	"ACTIONS_ID_TOKEN_REQUEST_TOKEN",
	"ACTIONS_ID_TOKEN_REQUEST_URL",
	"ACTIONS_RUNTIME_TOKEN",
	"GITHUB_TOKEN",
	"OTEL_EXPORTER_OTLP_HEADERS",
}

// reservedPrefix: modelci's own variables, secret or contract, are never
// passed through by name.
const reservedPrefix = "MODELCI_"

var (
	// ErrSecretEnv: a variable to pass through is one of SecretEnv or another
	// MODELCI_* name.
	ErrSecretEnv = errors.New("a variable modelci keeps to itself")
	// ErrEnvName: a variable to pass through is not a valid name.
	ErrEnvName = errors.New("not a variable name")
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckPassEnv says whether name may be passed through from modelci's
// environment to a trainer or evaluator: an error wrapping ErrEnvName or
// ErrSecretEnv, naming the variable, when it may not. Names compare without
// regard to case, so that modelci_key_password is refused too.
func CheckPassEnv(name string) error {
	if !envName.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrEnvName)
	}
	upper := strings.ToUpper(name)
	if slices.Contains(SecretEnv, upper) {
		return fmt.Errorf("%s: %w (a secret modelci uses)", name, ErrSecretEnv)
	}
	if strings.HasPrefix(upper, reservedPrefix) {
		return fmt.Errorf("%s: %w (%s* names are modelci's own)", name, ErrSecretEnv, reservedPrefix)
	}
	return nil
}

// childEnv builds a child's whole environment: PATH (modelci's), HOME and
// TMPDIR (the fresh directories home and tmp), LANG (modelci's, else
// C.UTF-8), then each of pass that is set in modelci's environment, then set
// (NAME=VALUE). A later entry replaces an earlier one of the same name, so
// pass may name HOME to hand over the real home directory. Nothing else of
// os.Environ() is passed on.
func childEnv(home, tmp string, pass, set []string) ([]string, error) {
	lang := os.Getenv("LANG")
	if lang == "" {
		lang = "C.UTF-8"
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=" + lang, "TMPDIR=" + tmp}
	for _, name := range pass {
		if err := CheckPassEnv(name); err != nil {
			return nil, err
		}
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	env = append(env, set...)
	return dedupEnv(env), nil
}

// dedupEnv keeps the last entry of each name, in the order of first
// appearance.
func dedupEnv(env []string) []string {
	index := map[string]int{}
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := index[name]; ok {
			out[i] = kv
			continue
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	return out
}
