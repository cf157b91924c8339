package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/sign"
	"github.com/modelci/modelci/stages/train"
)

// ErrNeedsRegistry means signing was asked for an image that only lives in
// the OCI layout: signatures live in a registry.
var ErrNeedsRegistry = errors.New("signing needs a registry")

// WithAccess is how the run reaches registries: the push, the base image,
// signing and every verification (the champion, the deploy) alike.
func WithAccess(a oci.Access) Option { return func(o *options) { o.access = a } }

// WithRegistryAuth is WithAccess with basic credentials (empty username:
// the environment, then the keychain) and plain HTTP when insecure.
func WithRegistryAuth(username, password string, insecure bool) Option {
	return func(o *options) {
		if username != "" {
			o.access = o.access.WithCredentials(username, password)
		}
		o.access.Insecure = o.access.Insecure || insecure
	}
}

// WithSigner signs with src instead of what sign: says (tests, and the
// Dagger module, which holds keys as secrets).
func WithSigner(src sign.SignerSource) Option { return func(o *options) { o.signer = src } }

func (r *run) signs() bool { return r.o.signer != nil || r.spec.Sign.Enabled() }

// signer is WithSigner's, else the spec's sign: block's.
func (r *run) signer(context.Context) (sign.SignerSource, error) {
	if r.o.signer != nil {
		return r.o.signer, nil
	}
	return Signer(SignerConfig{}.OrSpec(r.spec))
}

// signAndAttest signs the pushed image, attests the gate verdict and the
// provenance, and attaches the signed metrics; the same for the ModelPack
// artifact beside it (same verdict, provenance and metrics, subject the
// artifact's digest), and signs the runtime image.
func (r *run) signAndAttest(ctx context.Context, ref string, report *modelgate.Report, metrics *modelgate.Metrics) (*SignOutput, error) {
	src, err := r.signer(ctx)
	if err != nil {
		return nil, err
	}
	sp := r.spec
	opts := r.o.signOptions(sign.WithRunID(r.rec.ID))
	modelRef := modelgate.ModelRef{Name: sp.Model.Name, Version: sp.Model.Version}
	baselineDigest := ""
	if b := r.rec.Inputs.Baseline; b != nil {
		baselineDigest = b.Digest
	}
	gate := modelgate.NewGatePredicate(report, sp.Gate, metrics, modelRef, baselineDigest, r.rec.Started)
	prov, err := sign.NewProvenance(r.provenanceInput(modelRef))
	if err != nil {
		return nil, err
	}
	mb, err := metrics.Encode()
	if err != nil {
		return nil, err
	}
	attest := func(ref string) (*SignOutput, error) {
		out := &SignOutput{}
		s, err := sign.Sign(ctx, ref, src, opts...)
		if err != nil {
			return nil, err
		}
		out.Signature = s.ManifestDigest
		a, err := sign.Attest(ctx, ref, modelgate.GatePredicateType, gate, src, opts...)
		if err != nil {
			return nil, err
		}
		out.GateAttestation = a.ManifestDigest
		a, err = sign.Attest(ctx, ref, sign.ProvenancePredicateType, prov, src, opts...)
		if err != nil {
			return nil, err
		}
		out.ProvenanceAttestation = a.ManifestDigest
		m, err := sign.AttachMetrics(ctx, ref, mb, src, opts...)
		if err != nil {
			return nil, err
		}
		out.Metrics = m.ManifestDigest
		return out, nil
	}
	out, err := attest(ref)
	if err != nil {
		return nil, err
	}
	if p := r.rec.Outputs.Push; p != nil && p.ModelPack != "" {
		if out.ModelPack, err = attest(p.ModelPack); err != nil {
			return nil, fmt.Errorf("modelpack %s: %w", p.ModelPack, err)
		}
	}
	if p := r.rec.Outputs.Push; p != nil && p.Runtime != "" {
		// A signature only: the runtime image holds no model to gate. No run
		// id in its payload: runs that share the runtime image share one
		// signature (cosign skips an identical one) rather than pile up.
		s, err := sign.Sign(ctx, p.Runtime, src, r.o.signOptions()...)
		if err != nil {
			return nil, fmt.Errorf("runtime %s: %w", p.Runtime, err)
		}
		out.RuntimeSignature = s.ManifestDigest
	}
	return out, nil
}

func (r *run) provenanceInput(model modelgate.ModelRef) sign.ProvenanceInput {
	uri, rev := SourceRevision(r.spec.Dir)
	return ProvenanceInput(r.spec, ProvenanceRun{
		BuilderID: builderID(), RunID: r.rec.ID,
		DatasetDigest: r.rec.Inputs.Dataset.Digest, Params: r.rec.Inputs.Params,
		SourceURI: uri, SourceRevision: rev,
		Started: r.rec.Started, Finished: r.o.now().UTC(),
		Smoke: r.rec.Outputs.Smoke, Cluster: r.rec.Inputs.Cluster,
	})
}

// ProvenanceRun is what one build of a spec adds to its provenance: who
// built it, when, from which commit and dataset. `modelci run` and the
// Dagger module's predicates step (internal/stage) both fill it, so that
// the same inputs give the same provenance apart from these fields.
type ProvenanceRun struct {
	BuilderID, RunID string
	// DatasetDigest is the dataset's digest (metrics.json dataset.digest).
	DatasetDigest string
	// Params are train.params as the run used them (nil: the spec's).
	Params map[string]any
	// Smoke is the smoke test's result, a byproduct of the build.
	Smoke *SmokeOutput
	// Cluster is the Job that trained the model (train.runner:
	// kubernetes): its trainer image is pinned, the Job a byproduct.
	Cluster *ClusterInput
	// SourceURI and SourceRevision name the training code's repository
	// and commit (SourceRevision's result); empty outside a repository.
	SourceURI, SourceRevision string
	Started, Finished         time.Time
}

// ProvenanceInput is the SLSA provenance input of a build of spec: the
// model, the dataset, the parameters and split, the source revision and
// the trainer (the built-in one and its version, or the command pinned by
// the source revision).
func ProvenanceInput(sp *spec.Spec, b ProvenanceRun) sign.ProvenanceInput {
	params := b.Params
	if params == nil {
		params = sp.Train.Params
	}
	split := map[string]any{}
	if sp.Data.Seed != nil {
		split["seed"] = *sp.Data.Seed
	}
	if sp.Data.TestFraction != nil {
		split["test_fraction"] = *sp.Data.TestFraction
	}
	in := sign.ProvenanceInput{
		BuilderID:      b.BuilderID,
		ModelciVersion: Version(),
		RunID:          b.RunID,
		Model:          modelgate.ModelRef{Name: sp.Model.Name, Version: sp.Model.Version},
		DatasetURI:     sp.Data.Path,
		DatasetDigest:  b.DatasetDigest,
		Parameters:     map[string]any{"params": params, "split": split},
		SourceURI:      b.SourceURI,
		SourceRevision: b.SourceRevision,
		StartedOn:      b.Started,
		FinishedOn:     b.Finished,
	}
	if sm := b.Smoke; sm != nil {
		// Platform-independent figures only: the module's build and modelci
		// run's must agree.
		in.Byproducts = append(in.Byproducts, sign.ResourceDescriptor{
			Name: "smoke-test", URI: "https://modelci.dev/smoke/v1",
			Annotations: map[string]any{
				"kind": sm.Kind, "platform": sm.Platform, "entrypoint": sm.Entrypoint,
				"rows": sm.Rows, "compared": sm.Compared, "max_rel_diff": sm.MaxRelDiff, "tolerance": sm.Tolerance,
			},
		})
	}
	var trainJob *ClusterJob
	if c := b.Cluster; c != nil && c.Train != nil {
		trainJob = c.Train
		in.Byproducts = append(in.Byproducts, sign.ResourceDescriptor{
			Name: "training-job", URI: "https://modelci.dev/training/kubernetes/v1",
			Annotations: map[string]any{
				"context": c.Context, "server": c.Server, "namespace": c.Namespace, "job": c.Train.Job, "uid": c.Train.UID,
				"trainer_image": c.Train.Image, "modelci_image": c.ModelciImage,
				"dataset_artifact": c.Train.Input, "model_artifact": c.Train.Output,
			},
		})
	}
	switch {
	case sp.Train.Builtin != "":
		in.BuiltinTrainer, in.BuiltinTrainerVersion = sp.Train.Builtin, train.Version
	case trainJob != nil && pinned(trainJob.Image):
		// The node resolved the trainer image to a digest: that pins it.
		in.TrainerImage = trainJob.Image
	default:
		// A host-process trainer has no image; its command is the best
		// identity there is, and the source revision pins its code.
		in.BuiltinTrainer = "command:" + strings.Join(sp.Train.Command, " ")
		in.BuiltinTrainerVersion = in.SourceRevision
	}
	return in
}

// builderID names the build platform: the workflow in GitHub Actions, else
// a local modelci.
func builderID() string {
	if ref := os.Getenv("GITHUB_WORKFLOW_REF"); ref != "" && os.Getenv("GITHUB_SERVER_URL") != "" {
		return os.Getenv("GITHUB_SERVER_URL") + "/" + ref
	}
	return "https://modelci.dev/builders/local@" + Version()
}

// SourceRevision finds the git repository and commit of the project in
// dir, when it is in one (in GitHub Actions: the workflow's repository and
// commit).
func SourceRevision(dir string) (uri, rev string) {
	if sha := os.Getenv("GITHUB_SHA"); sha != "" && os.Getenv("GITHUB_REPOSITORY") != "" {
		return os.Getenv("GITHUB_SERVER_URL") + "/" + os.Getenv("GITHUB_REPOSITORY"), sha
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", ""
	}
	rev = strings.TrimSpace(string(out))
	if u, err := exec.Command("git", "-C", dir, "config", "--get", "remote.origin.url").Output(); err == nil {
		uri = strings.TrimSpace(string(u))
	}
	if uri == "" {
		uri = "git+file://" + dir
	}
	return uri, rev
}

// sign is the sign stage: signature, gate and provenance attestations, and
// the metrics artifact on the pushed digest.
func (r *run) sign(ctx context.Context) (string, error) {
	s, err := r.signAndAttest(ctx, r.ref, r.report, r.metrics)
	if err != nil {
		return "", err
	}
	r.rec.Outputs.Sign = s
	// Only now does the version tag name the image: a failed signature
	// leaves a digest nobody tagged.
	if err := r.tagVersion(ctx); err != nil {
		return "", err
	}
	also := ""
	if s.ModelPack != nil {
		also = "; the modelpack too"
	}
	if s.RuntimeSignature != "" {
		also += "; runtime signed"
	}
	return fmt.Sprintf("signed; attested gate %s and provenance; metrics attached%s; tags %s", r.report.Verdict, also, strings.Join(r.rec.Outputs.Push.Tags, ", ")), nil
}

// pinned says whether ref names an image by digest, as provenance needs.
func pinned(ref string) bool {
	_, _, err := oci.SplitPinned(ref)
	return err == nil
}
