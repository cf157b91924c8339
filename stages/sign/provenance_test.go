package sign_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/sign"
)

func TestNewProvenance(t *testing.T) {
	base := sign.ProvenanceInput{
		BuilderID:      "https://modelci.dev/builders/local",
		DatasetURI:     "data/diabetes.csv",
		DatasetDigest:  "sha256:" + strings.Repeat("ab", 32),
		SourceURI:      "git+https://example.invalid/models.git",
		SourceRevision: strings.Repeat("c", 40),
		Parameters:     map[string]any{"epochs": 300},
	}
	trainerDigest := "sha256:" + strings.Repeat("ef", 32)
	for _, tc := range []struct {
		name    string
		edit    func(*sign.ProvenanceInput)
		wantErr string
		// wantDeps are the resolved dependencies as name → uri.
		wantDeps map[string]string
	}{
		{
			name: "trainer image",
			edit: func(in *sign.ProvenanceInput) { in.TrainerImage = "127.0.0.1:5000/trainers/torch@" + trainerDigest },
			wantDeps: map[string]string{
				"dataset": "data/diabetes.csv", "source": "git+https://example.invalid/models.git",
				"trainer": "oci://127.0.0.1:5000/trainers/torch",
			},
		},
		{
			name: "built-in trainer",
			edit: func(in *sign.ProvenanceInput) { in.BuiltinTrainer, in.BuiltinTrainerVersion = "linear", "1" },
			wantDeps: map[string]string{
				"dataset": "data/diabetes.csv", "source": "git+https://example.invalid/models.git",
				"trainer": "https://modelci.dev/trainers/builtin/linear@1",
			},
		},
		{name: "no trainer", edit: func(*sign.ProvenanceInput) {}, wantErr: "neither a trainer image"},
		{name: "trainer by tag", edit: func(in *sign.ProvenanceInput) { in.TrainerImage = "host/t:latest" }, wantErr: "not pinned by digest"},
		{name: "no dataset digest", edit: func(in *sign.ProvenanceInput) {
			in.DatasetDigest, in.BuiltinTrainer, in.BuiltinTrainerVersion = "", "linear", "1"
		}, wantErr: "dataset digest"},
		{name: "no builder", edit: func(in *sign.ProvenanceInput) {
			in.BuilderID, in.BuiltinTrainer, in.BuiltinTrainerVersion = "", "linear", "1"
		}, wantErr: "builder id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			tc.edit(&in)
			p, err := sign.NewProvenance(in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewProvenance: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				BuildDefinition struct {
					BuildType            string         `json:"buildType"`
					ExternalParameters   map[string]any `json:"externalParameters"`
					ResolvedDependencies []struct {
						Name   string            `json:"name"`
						URI    string            `json:"uri"`
						Digest map[string]string `json:"digest"`
					} `json:"resolvedDependencies"`
				} `json:"buildDefinition"`
				RunDetails struct {
					Builder struct {
						ID string `json:"id"`
					} `json:"builder"`
				} `json:"runDetails"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.BuildDefinition.BuildType != sign.BuildType || doc.RunDetails.Builder.ID != base.BuilderID {
				t.Errorf("buildType %q, builder %q", doc.BuildDefinition.BuildType, doc.RunDetails.Builder.ID)
			}
			if doc.BuildDefinition.ExternalParameters["parameters"] == nil {
				t.Errorf("no parameters in %s", b)
			}
			got := map[string]string{}
			for _, d := range doc.BuildDefinition.ResolvedDependencies {
				got[d.Name] = d.URI
				if d.Name == "dataset" && d.Digest["sha256"] != strings.Repeat("ab", 32) {
					t.Errorf("dataset digest %v", d.Digest)
				}
				if d.Name == "source" && d.Digest["gitCommit"] != base.SourceRevision {
					t.Errorf("source digest %v", d.Digest)
				}
				if d.Name == "trainer" && in.TrainerImage != "" && d.Digest["sha256"] != strings.Repeat("ef", 32) {
					t.Errorf("trainer digest %v", d.Digest)
				}
			}
			if len(got) != len(tc.wantDeps) {
				t.Errorf("dependencies %v, want %v", got, tc.wantDeps)
			}
			for k, v := range tc.wantDeps {
				if got[k] != v {
					t.Errorf("dependency %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}
