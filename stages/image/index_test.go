package image_test

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/stages/image"
)

// The index lists each image by media type, digest, size and platform
// only: no artifactType, which skopeo 1.9 cannot copy unchanged.
func TestNewIndex(t *testing.T) {
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
	amd, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	in.Platforms = []string{"linux/arm64"}
	arm, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	tests := []struct {
		name      string
		imgs      []v1.Image
		platforms []v1.Platform
		wantErr   bool
	}{
		{"two platforms", []v1.Image{amd, arm}, platforms, false},
		{"one", []v1.Image{arm}, platforms[1:], false},
		{"fewer platforms than images", []v1.Image{amd, arm}, platforms[:1], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := image.NewIndex(tt.imgs, tt.platforms, map[string]string{"org.opencontainers.image.version": "1.0.0"})
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Fatalf("validate: %v", err)
			}
			raw, err := idx.RawManifest()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), "artifactType") {
				t.Errorf("index manifest has artifactType:\n%s", raw)
			}
			m, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != types.OCIImageIndex || m.Annotations["org.opencontainers.image.version"] != "1.0.0" || len(m.Manifests) != len(tt.imgs) {
				t.Fatalf("index manifest %+v", m)
			}
			for i, d := range m.Manifests {
				if d.Digest != digest(t, tt.imgs[i]) || d.Platform == nil || !d.Platform.Equals(tt.platforms[i]) || d.MediaType != types.OCIManifestSchema1 {
					t.Errorf("entry %d: %+v", i, d)
				}
			}
		})
	}
}
