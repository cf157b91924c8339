package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/artifact"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/evaluate"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/kubejob"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/train"
)

// ClusterInput is where the steps ran when train.runner is kubernetes: the
// run record's and the provenance's account of the Jobs.
type ClusterInput struct {
	Context   string `json:"context"`
	Server    string `json:"server"`
	Namespace string `json:"namespace"`
	// ModelciImage ran the fetch and put steps (and the built-in trainer).
	ModelciImage string `json:"modelci_image"`
	// Train is the training Job; Evaluate the external evaluator's.
	Train    *ClusterJob `json:"train,omitempty"`
	Evaluate *ClusterJob `json:"evaluate,omitempty"`
}

// ClusterJob is one Job of a run.
type ClusterJob struct {
	Job string `json:"job"`
	UID string `json:"uid"`
	// Image is the step's image as the node resolved it (by digest).
	Image string `json:"image"`
	// Input is the input artifact (the data split, the project's staging
	// copy, for evaluation the model) by digest; Output the artifact the
	// Job pushed.
	Input  string `json:"input"`
	Output string `json:"output"`
	// Adopted: a killed run's Job of the same inputs was adopted.
	Adopted bool `json:"adopted,omitempty"`
	// AdmissionSeconds is how long the Job waited for Kueue.
	AdmissionSeconds float64 `json:"admission_seconds,omitempty"`
}

// Parts of a Job's input artifact, as kubejob.InputDir's subdirectories;
// the output artifact holds one part, clusterOut.
const (
	clusterSrc   = "src"
	clusterData  = "data"
	clusterModel = "model"
	clusterOut   = artifact.OutPath
)

// preflightCluster checks, before anything runs, that the training
// context exists in the kubeconfig and that the training repository takes
// pushes.
func (r *run) preflightCluster(ctx context.Context) error {
	k := r.spec.Train.Kubernetes
	if k.Context == "" {
		return fmt.Errorf("%s: train.kubernetes.context: %w", r.spec.File, spec.ErrNoTrainContext)
	}
	t, err := deploy.NewTarget(r.o.kubeconfig, k.Context)
	if err != nil {
		return fmt.Errorf("train on %s: %w", k.Context, err)
	}
	if k.Kind == spec.KindTrainJob {
		if err := kubejob.Served(t.Client.Discovery()); err != nil {
			return fmt.Errorf("%s: train.kubernetes.kind %s on %s: %w", r.spec.File, k.Kind, k.Context, err)
		}
	}
	repo := r.trainRepository()
	if repo == "" {
		return fmt.Errorf("%s: train.kubernetes.repository: %w: empty, and no image.repository", r.spec.File, spec.ErrSpec)
	}
	if repo != r.repository() {
		if err := registry.Preflight(ctx, repo, r.o.registryOptions()...); err != nil {
			return fmt.Errorf("training repository: %w", err)
		}
	}
	return nil
}

// cluster is a run's connection to the training cluster, made once per run.
type cluster struct {
	target *deploy.Target
	repo   string
	tool   string
}

// connect connects to train.kubernetes.context and has modelci's CLI
// image in the training repository.
func (r *run) connect(ctx context.Context) (*cluster, error) {
	if r.cluster != nil {
		return r.cluster, nil
	}
	sp := r.spec
	k := sp.Train.Kubernetes
	if k.Context == "" {
		return nil, fmt.Errorf("%s: train.kubernetes.context: %w", sp.File, spec.ErrNoTrainContext)
	}
	target, err := deploy.NewTarget(r.o.kubeconfig, k.Context)
	if err != nil {
		return nil, fmt.Errorf("train on %s: %w", k.Context, err)
	}
	c := &cluster{target: target, repo: r.trainRepository(), tool: k.ModelciImage}
	if c.repo == "" {
		return nil, fmt.Errorf("%s: train.kubernetes.repository: %w: empty, and no image.repository", sp.File, spec.ErrSpec)
	}
	if c.tool == "" {
		if c.tool, err = r.pushModelciImage(ctx, c.repo); err != nil {
			return nil, err
		}
	}
	r.rec.Inputs.Cluster = &ClusterInput{Context: k.Context, Server: target.Server, Namespace: k.Namespace, ModelciImage: c.tool}
	r.cluster = c
	return c, nil
}

// onCluster runs one step as a Job: parts pushed as its input artifact,
// the Job run, its output pulled into <tmp>/cluster-<step> and returned
// as the directory the step wrote.
func (r *run) onCluster(ctx context.Context, name string, parts []artifact.Part, image string, command []string, env []corev1.EnvVar) (string, *ClusterJob, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return "", nil, err
	}
	pushed, err := artifact.Push(ctx, c.repo, artifact.ArtifactTypeTrainingInput, parts, artifact.WithRegistryOptions(r.o.registryOptions()...))
	input := pushed.Ref
	if err != nil {
		return "", nil, fmt.Errorf("push the %s input to %s: %w", name, c.repo, err)
	}
	if image != "" {
		image = r.pinImage(ctx, image)
	}
	step, err := r.clusterStep(c, name, input, image, command, env)
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(r.o.log, "%s: a job on %s in namespace %s, input %s\n", name, c.target.Context, step.Namespace, input)
	var res *kubejob.Result
	if r.spec.Train.Kubernetes.Kind == spec.KindTrainJob {
		dyn, derr := dynamic.NewForConfig(c.target.Config)
		if derr != nil {
			return "", nil, fmt.Errorf("trainjob client: %w", derr)
		}
		res, err = kubejob.RunTrainJob(ctx, c.target.Client, dyn, step, kubejob.WithLog(r.o.log))
	} else {
		res, err = kubejob.Run(ctx, c.target.Client, step, kubejob.WithLog(r.o.log))
	}
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(r.tmp, "cluster-"+name)
	if _, err := artifact.Pull(ctx, res.Output, dir, artifact.WithRegistryOptions(r.o.registryOptions()...), artifact.WithArtifactType(artifact.ArtifactTypeTrainingOutput)); err != nil {
		return "", nil, fmt.Errorf("pull the %s job's output %s: %w", name, res.Output, err)
	}
	job := &ClusterJob{
		Job: res.Job, UID: res.UID, Image: res.StepImage, Input: input, Output: res.Output,
		Adopted: res.Adopted, AdmissionSeconds: res.Admission.Seconds(),
	}
	if pinned(step.Image) {
		// What modelci resolved and the Job ran; the node's image id may be
		// the config's digest, which names no repository.
		job.Image = step.Image
	}
	return filepath.Join(dir, clusterOut), job, nil
}

// trainOnCluster trains as a Job: the train split (and for a command the
// project's staging copy) in, trainer contract v1 in the pod, the model out.
func (r *run) trainOnCluster(ctx context.Context) (*train.ExternalResult, error) {
	sp := r.spec
	root := filepath.Join(r.tmp, "cluster-input-train")
	parts, err := r.clusterParts(root, len(sp.Train.Command) > 0, train.TrainCSV, r.trainSet)
	if err != nil {
		return nil, err
	}
	params := sp.Train.Params
	if params == nil {
		params = map[string]any{}
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("train.params: %w", err)
	}
	env := []corev1.EnvVar{
		{Name: train.EnvData, Value: kubejob.InputDir + "/" + clusterData},
		{Name: train.EnvOut, Value: kubejob.OutputDir},
		{Name: train.EnvParams, Value: string(pj)},
		{Name: train.EnvSeed, Value: strconv.FormatInt(*sp.Data.Seed, 10)},
	}
	if env, err = passEnv(env, sp.File, "train.env", sp.Train.Env); err != nil {
		return nil, err
	}
	img, command := sp.Train.ClusterImage(), sp.Train.Command
	if sp.Train.Builtin != "" {
		img, command = "", []string{image.CLIPath, "stage", "train", "--name", sp.Model.Name, "--version", sp.Model.Version, "--target", sp.Data.Target}
	}
	out, job, err := r.onCluster(ctx, "train", parts, img, command, env)
	if err != nil {
		return nil, err
	}
	r.rec.Inputs.Cluster.Train = job
	file := ""
	if sp.Train.Format != "" {
		if file, err = model.FormatFile(sp.Train.Format); err != nil {
			return nil, err
		}
	}
	res, err := train.CheckOutput(out, file)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Job, err)
	}
	return res, nil
}

// evaluateOnCluster runs the external evaluator as a Job: the test split,
// the model and the project's staging copy in, evaluator contract v1 in
// the pod, predictions.json out.
func (r *run) evaluateOnCluster(ctx context.Context) (*evaluate.Scores, error) {
	sp := r.spec
	root := filepath.Join(r.tmp, "cluster-input-evaluate")
	parts, err := r.clusterParts(root, true, evaluate.TestCSV, r.testSet)
	if err != nil {
		return nil, err
	}
	parts = append(parts, artifact.Part{Path: clusterModel, Dir: r.modelDir, MediaType: image.MediaTypeModelWeight})
	env := []corev1.EnvVar{
		{Name: evaluate.EnvModel, Value: kubejob.InputDir + "/" + clusterModel},
		{Name: evaluate.EnvData, Value: kubejob.InputDir + "/" + clusterData},
		{Name: evaluate.EnvOut, Value: kubejob.OutputDir},
	}
	if env, err = passEnv(env, sp.File, "evaluate.env", sp.Evaluate.Env); err != nil {
		return nil, err
	}
	out, job, err := r.onCluster(ctx, "evaluate", parts, sp.Train.ClusterImage(), sp.Evaluate.Command, env)
	if err != nil {
		return nil, err
	}
	r.rec.Inputs.Cluster.Evaluate = job
	scores, err := evaluate.ReadScores(filepath.Join(out, evaluate.Predictions), r.testSet.Rows())
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Job, err)
	}
	return scores, nil
}

// clusterParts writes a Job's input into root: the split as data/<file>
// and, with src, the project's staging copy.
func (r *run) clusterParts(root string, src bool, file string, set *data.Dataset) ([]artifact.Part, error) {
	dataDir, srcDir := filepath.Join(root, clusterData), filepath.Join(root, clusterSrc)
	for _, d := range []string{dataDir, srcDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("job input: %w", err)
		}
	}
	if err := data.WriteFile(filepath.Join(dataDir, file), set); err != nil {
		return nil, fmt.Errorf("job input: %w", err)
	}
	parts := []artifact.Part{{Path: clusterData, Dir: dataDir, MediaType: artifact.MediaTypeDataset}}
	if src {
		exclude, dataset := r.leftOut()
		if err := train.Stage(r.spec.Dir, srcDir, exclude, dataset, r.o.log); err != nil {
			return nil, fmt.Errorf("job input: %w", err)
		}
		parts = append(parts, artifact.Part{Path: clusterSrc, Dir: srcDir, MediaType: artifact.MediaTypeCode})
	}
	return parts, nil
}

// passEnv adds the values of the names key lists (train.env,
// evaluate.env), which exclude modelci's secrets, to env.
func passEnv(env []corev1.EnvVar, file, key string, names []string) ([]corev1.EnvVar, error) {
	for _, name := range names {
		if err := train.CheckPassEnv(name); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, key, err)
		}
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, corev1.EnvVar{Name: name, Value: v})
		}
	}
	return env, nil
}

// clusterStep is a Job's step. An empty image is modelci's CLI image (the
// built-in trainer). Only the contract's variables and the names the spec
// passes through reach the Job.
func (r *run) clusterStep(c *cluster, name, input, img string, command []string, env []corev1.EnvVar) (kubejob.Step, error) {
	sp := r.spec
	k := sp.Train.Kubernetes
	res, err := deploy.Requirements(k.Resources, sp.Train.ClusterGPU())
	if err != nil {
		return kubejob.Step{}, fmt.Errorf("%s: train.kubernetes.resources: %w", sp.File, err)
	}
	s := kubejob.Step{
		Name: name, Model: sp.Model.Name, RunID: r.rec.ID, Namespace: k.Namespace,
		Image: img, Command: command, Env: env,
		ModelciImage: c.tool, Input: input, Output: c.repo,
		Insecure:  r.o.access.Insecure || loopbackRepository(c.repo),
		Resources: res, NodeSelector: k.NodeSelector, Tolerations: deploy.CoreTolerations(k.Tolerations),
		ServiceAccount: k.ServiceAccount, Queue: k.Queue, RegistrySecret: k.RegistrySecret,
		Timeout: sp.Train.ClusterTimeout(), RuntimeRef: k.RuntimeRef, NumNodes: k.NumNodes,
	}
	if name == "evaluate" {
		s.Timeout = sp.Evaluate.TimeoutDuration()
	}
	if k.BackoffLimit != nil {
		s.BackoffLimit = *k.BackoffLimit
	}
	if s.Image == "" {
		s.Image = c.tool
	} else {
		s.WorkingDir = kubejob.InputDir + "/" + clusterSrc
	}
	return s, nil
}

// pinImage resolves a step's image to its digest in its registry, so that
// the Job runs, and the record names, what modelci resolved (a tag moved
// meanwhile changes nothing). An image it cannot resolve (no registry
// host, a registry only the cluster reaches) runs as named, with a warning.
func (r *run) pinImage(ctx context.Context, img string) string {
	ref, err := r.o.access.ParseRef(img)
	if err == nil && ref.HasDigest() {
		return img
	}
	if err == nil {
		var h v1.Hash
		if h, err = registry.Resolve(ctx, img, r.o.registryOptions()...); err == nil {
			return ref.Repository() + "@" + h.String()
		}
	}
	r.warnf("the step image %s is not pinned by digest (%v): the record names what the node reports", img, err)
	return img
}

// trainRepository is where a Job's artifacts go: train.kubernetes.repository,
// else the run's image repository.
func (r *run) trainRepository() string {
	if k := r.spec.Train.Kubernetes.Repository; k != "" {
		return k
	}
	if r.o.repository != "" {
		return r.o.repository
	}
	return r.spec.Image.Repository
}

// pushModelciImage builds modelci's static CLI image from modelci's
// source, as the runtime is built, and pushes it by digest.
func (r *run) pushModelciImage(ctx context.Context, repo string) (string, error) {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	bin, err := image.Runtime(ctx, p, image.WithCommand(image.CLIName), image.WithSourceDir(r.spec.Dir), image.WithLog(r.o.log))
	if err != nil {
		return "", fmt.Errorf("modelci image: %w", err)
	}
	img, err := image.CLIImage(bin)
	if err != nil {
		return "", fmt.Errorf("modelci image: %w", err)
	}
	// No tag: the digest is its name.
	pushed, err := registry.Push(ctx, img, repo, r.o.registryOptions()...)
	if err != nil {
		return "", fmt.Errorf("push modelci image to %s: %w", repo, err)
	}
	return pushed.Ref, nil
}

// loopbackRepository says whether repo's registry is on loopback: reached
// over plain HTTP, from the pod as from here.
func loopbackRepository(repo string) bool {
	r, err := oci.ParseRepository(repo)
	return err == nil && oci.IsLoopback(r.Name().RegistryStr())
}
