package ghactions_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelci/modelci/spec"
)

// The sample project of docs/adopting.md, relative to this package's
// directory, and the repository the docs' copy of its spec names.
const (
	adoptingDir  = "../examples/adopting"
	docsOwner    = "acme/models"
	thisOwner    = "modelci/modelci"
	githubIssuer = "https://token.actions.githubusercontent.com"
)

// docSpec is the one complete modelci.yaml of docs/adopting.md: the only
// fenced yaml block holding an apiVersion.
func docSpec(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/adopting.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```$").FindAllStringSubmatch(string(b), -1)
	var specs []string
	for _, m := range blocks {
		if strings.Contains(m[1], "apiVersion:") {
			specs = append(specs, m[1])
		}
	}
	if len(specs) != 1 {
		t.Fatalf("docs/adopting.md has %d yaml blocks with an apiVersion, want one complete modelci.yaml", len(specs))
	}
	return specs[0]
}

// checkAdoptingSpec holds s to what docs/adopting.md promises: every
// section, keyless signing, verification by the reusable workflow's
// identity in owner's repository as it runs from main, and the staging
// and prod environments with contexts, namespaces, constraints and
// strategies, the release publishing where promote looks.
func checkAdoptingSpec(t *testing.T, s *spec.Spec, owner string) {
	t.Helper()
	if s.Model.Name == "" || s.Data.Path == "" || s.Train.Builtin == "" && len(s.Train.Command) == 0 || s.Gate.Threshold == nil {
		t.Errorf("model %+v, data %+v, train %+v, gate threshold %v: want each set", s.Model, s.Data, s.Train, s.Gate.Threshold)
	}
	if s.Evaluate.Timeout == "" && len(s.Evaluate.Command) == 0 {
		t.Errorf("no evaluate: section")
	}
	if !s.Sign.Keyless || s.Sign.Key != "" {
		t.Errorf("sign %+v, want keyless", s.Sign)
	}
	// Fulcio names a GitHub workflow's certificate by the workflow that
	// signs (job_workflow_ref): the reusable workflow as the repository
	// holds it, at the branch release.yml runs on.
	wantID := "https://github.com/" + owner + "/.github/workflows/" + reusable + "@refs/heads/main"
	if s.Verify.CertificateIdentity != wantID || s.Verify.CertificateOIDCIssuer != githubIssuer || s.Verify.Key != "" {
		t.Errorf("verify %+v, want identity %s issued by %s", s.Verify, wantID, githubIssuer)
	}
	if len(s.Environments) != 2 {
		t.Errorf("environments %v, want staging and prod", s.EnvironmentNames())
	}
	for _, name := range []string{"staging", "prod"} {
		e, err := s.Environment(name)
		if err != nil {
			t.Error(err)
			continue
		}
		if e.Context == "" || e.Namespace == "" || e.Constraint == "" || e.Strategy == "" {
			t.Errorf("environments.%s %+v: want its context, namespace, constraint and strategy written out", name, e)
		}
		if !strings.HasPrefix(e.Repository, "ghcr.io/"+owner+"/") {
			t.Errorf("environments.%s.repository %s: want the GitHub container registry under %s (the workflow's token pushes there)", name, e.Repository, owner)
		}
	}
	if s.Environments["staging"].Repository == s.Environments["prod"].Repository {
		t.Errorf("staging and prod share the repository %s", s.Environments["prod"].Repository)
	}
	if s.Image.Repository != s.Environments["staging"].Repository {
		t.Errorf("image.repository %s, environments.staging.repository %s: the release publishes where promote --from staging looks", s.Image.Repository, s.Environments["staging"].Repository)
	}
}

// TestAdoptingSpec: the sample project's modelci.yaml, which this
// repository's workflows release and promote, loads with modelci's own
// loader and is the one docs/adopting.md shows, with the docs' repository
// (acme/models) in place of this one; the docs' copy loads too.
func TestAdoptingSpec(t *testing.T) {
	path := filepath.Join(adoptingDir, spec.FileName)
	s, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checkAdoptingSpec(t, s, thisOwner)
	if _, err := os.Stat(s.Path(s.Data.Path)); err != nil {
		t.Errorf("data: %v", err)
	}

	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := docSpec(t)
	if strings.Contains(doc, thisOwner) {
		t.Errorf("the docs' modelci.yaml names %s: it is the adopting repository's (%s)", thisOwner, docsOwner)
	}
	if got := strings.ReplaceAll(doc, docsOwner, thisOwner); got != string(file) {
		t.Errorf("docs/adopting.md's modelci.yaml, with %s for %s, differs from %s:\n--- docs\n%s\n--- file\n%s", thisOwner, docsOwner, path, got, file)
	}
	abs, err := filepath.Abs(adoptingDir)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := spec.Parse(spec.FileName, abs, []byte(doc))
	if err != nil {
		t.Fatalf("docs/adopting.md's modelci.yaml: %v", err)
	}
	checkAdoptingSpec(t, ds, docsOwner)
}
