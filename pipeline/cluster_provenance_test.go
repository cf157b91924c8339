package pipeline_test

import (
	"strings"
	"testing"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/sign"
)

// A model trained on a cluster: the provenance pins the trainer image the Job ran by its
// digest and names the Job, its cluster and the dataset artifact.
func TestProvenanceNamesTheTrainingJob(t *testing.T) {
	sp, err := spec.Parse("modelci.yaml", t.TempDir(), []byte(`apiVersion: modelci.dev/v1
model: {name: diabetes, version: 1.0.0}
data: {path: data.csv, target: target}
train:
  command: [python3, train.py]
  format: onnx
  runner: kubernetes
  kubernetes: {context: gpu, image: "10.0.0.1:5000/trainers/torch:1", repository: 10.0.0.1:5000/ml/training}
evaluate: {command: [python3, evaluate.py]}
gate: {threshold: 5000}
`))
	if err != nil {
		t.Fatal(err)
	}
	trainer := "10.0.0.1:5000/trainers/torch@sha256:" + strings.Repeat("a", 64)
	in := pipeline.ProvenanceInput(sp, pipeline.ProvenanceRun{
		BuilderID: "b", RunID: "r", DatasetDigest: "sha256:" + strings.Repeat("d", 64),
		Cluster: &pipeline.ClusterInput{Context: "gpu", Server: "https://10.0.0.2:6443", Namespace: "ml", ModelciImage: "m",
			Train: &pipeline.ClusterJob{Job: "modelci-diabetes-train-x", UID: "u-1", Image: trainer, Input: "in@sha256:1", Output: "out@sha256:2"}},
	})
	if in.TrainerImage != trainer || in.BuiltinTrainer != "" {
		t.Errorf("trainer image %q, builtin %q", in.TrainerImage, in.BuiltinTrainer)
	}
	var job *sign.ResourceDescriptor
	for i := range in.Byproducts {
		if in.Byproducts[i].Name == "training-job" {
			job = &in.Byproducts[i]
		}
	}
	if job == nil || job.Annotations["uid"] != "u-1" || job.Annotations["dataset_artifact"] != "in@sha256:1" || job.Annotations["server"] != "https://10.0.0.2:6443" {
		t.Fatalf("training-job byproduct: %+v", job)
	}
	if _, err := sign.NewProvenance(in); err != nil {
		t.Errorf("the provenance is refused: %v", err)
	}
	// A trainer image the node reported without a repository is not a pin: the command names it.
	in = pipeline.ProvenanceInput(sp, pipeline.ProvenanceRun{BuilderID: "b", DatasetDigest: "sha256:" + strings.Repeat("d", 64),
		Cluster: &pipeline.ClusterInput{Train: &pipeline.ClusterJob{Image: "sha256:" + strings.Repeat("c", 64)}}})
	if in.TrainerImage != "" || !strings.HasPrefix(in.BuiltinTrainer, "command:") {
		t.Errorf("unpinned: trainer image %q, builtin %q", in.TrainerImage, in.BuiltinTrainer)
	}
}
