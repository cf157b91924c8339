// Package stage runs one modelci pipeline step inside a Dagger function's
// container, as `modelci stage STEP [flags]` (a hidden command). The module
// in ci/ imports none of modelci's packages: it wires containers, and every
// decision (the spec, the split, training and evaluation under the
// contracts, metrics.json, the gate, the attestation predicates, the image)
// is made here by the very code `modelci run` calls, so the two produce the
// same bytes and cannot drift apart.
//
//	stage plan       --spec FILE   (the spec's facts the module wires containers with, as JSON)
//	stage split      --data FILE --target COL --fraction F --seed S --out DIR
//	stage train      --name NAME --version V --target COL   (trainer contract v1: MODELCI_DATA, MODELCI_OUT, MODELCI_PARAMS, MODELCI_SEED)
//	stage evaluate   --target COL   (evaluator contract v1: MODELCI_MODEL, MODELCI_DATA, MODELCI_OUT)
//	stage metrics    --spec FILE --split split.json --train train.json --predictions predictions.json --out FILE
//	stage gate       --metrics FILE [--baseline FILE] (--spec FILE | --policy FILE) --out DIR
//	stage champion   --spec FILE --metrics FILE --test test.csv --kubeconfig FILE [--insecure] --out DIR   (gate.baseline.from's champion, as modelci run finds it)
//	stage predicates --spec FILE --metrics FILE [--baseline FILE [--baseline-digest D]] --started RFC3339 [--source-uri URI --source-revision SHA] --out DIR
//	stage image      --model DIR --runtime FILE --name N --version V --dataset-digest D --out DIR [--created UNIX]
//	stage push       --layout DIR --digest D --to HOST/REPO:TAG [--insecure] [--username U] [--allow-overwrite]
//	stage sign       --ref REF [--key FILE] [--insecure] [--gate FILE] [--provenance FILE] [--metrics FILE]
//	stage digest     DIR   (the model directory digest of a run record)
//	stage forward    --listen LOCAL=TARGET… -- CMD ARGS…   (relays LOCAL to TARGET while CMD runs; exits with CMD's status)
//	stage fetch      --ref HOST/REPO@sha256:… --dir DIR [--writable DIR…] [--insecure] [--artifact-type T]   (a training Job's init container: its inputs, artifact.Pull)
//	stage wrap       --ref REF --dir DIR --out DIR [--tmp DIR] --to HOST/REPO [--workdir DIR] [--termination-log FILE] [--insecure] -- CMD…   (a TrainJob's node: fetch, CMD, put from node 0)
//	stage put        --dir DIR --to HOST/REPO [--insecure] [--artifact-type T] [--path P] [--media-type M] [--termination-log FILE]   (a training Job's outputs by digest, artifact.Push; the reference on stdout and in FILE)
//
// Secrets come from the environment: MODELCI_REGISTRY_PASSWORD,
// MODELCI_KEY_PASSWORD and SIGSTORE_ID_TOKEN; fetch and put, which run in
// a training Job's pod, take registry credentials from the Docker config
// it mounts ($DOCKER_CONFIG/config.json) and never from a flag.
package stage

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/evaluate"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
	"github.com/modelci/modelci/stages/train"
)

// Split is what `stage split` records next to train/ and test/: the same
// facts `modelci run` puts in its run record and metrics.json.
type Split struct {
	DatasetDigest string   `json:"dataset_digest"`
	Rows          int      `json:"rows"`
	Features      []string `json:"features"`
	Target        string   `json:"target"`
	Seed          int64    `json:"seed"`
	TestFraction  float64  `json:"test_fraction"`
	TrainDigest   string   `json:"train_digest"`
	TrainRows     int      `json:"train_rows"`
	TestDigest    string   `json:"test_digest"`
	TestRows      int      `json:"test_rows"`
}

// Image is what `stage image` records next to the layout.
type Image struct {
	Digest string `json:"digest"`
	Tag    string `json:"tag"`
}

// Usage lists the steps.
const Usage = "usage: modelci stage plan|split|train|evaluate|metrics|gate|champion|predicates|image|push|sign|digest|forward|fetch|put|wrap [flags]"

// ErrUsage is returned for an unknown step or malformed flags.
var ErrUsage = errors.New(Usage)

// Run runs the step args[0] with the flags args[1:]. An error wrapping an
// *exec.ExitError is forward's command speaking for itself: its exit status
// is the step's. exitCode is the CLI's table for gate decisions, which the
// gate step writes for the workflows.
func Run(ctx context.Context, args []string, exitCode func(modelgate.Decision) int) error {
	if len(args) == 0 {
		return ErrUsage
	}
	cmds := map[string]func(context.Context, []string) error{
		"plan": planCmd, "split": splitCmd, "train": trainCmd, "evaluate": evaluateCmd,
		"metrics": metricsCmd, "gate": func(ctx context.Context, a []string) error { return gateCmd(ctx, a, exitCode) }, "predicates": predicatesCmd, "champion": championCmd,
		"image": imageCmd, "smoke": smokeCmd, "push": pushCmd, "sign": signCmd, "digest": digestCmd,
		"forward": forwardCmd, "fetch": fetchCmd, "put": putCmd, "wrap": wrapCmd,
	}
	run, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown step %q: %w", args[0], ErrUsage)
	}
	if err := run(ctx, args[1:]); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return err
		}
		return fmt.Errorf("stage %s: %w", args[0], err)
	}
	return nil
}

func splitCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("split", flag.ContinueOnError)
	path := fs.String("data", "", "CSV data set")
	target := fs.String("target", "", "target column")
	fraction := fs.Float64("fraction", 0.2, "test fraction")
	seed := fs.Int64("seed", 42, "split seed")
	out := fs.String("out", "", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ds, err := data.Load(ctx, *path, *target)
	if err != nil {
		return err
	}
	trainSet, testSet, err := data.Split(ds, *fraction, *seed)
	if err != nil {
		return fmt.Errorf("split %s: %w", *path, err)
	}
	for dir, set := range map[string]*data.Dataset{"train": trainSet, "test": testSet} {
		if err := writeCSV(filepath.Join(*out, dir, dir+".csv"), set); err != nil {
			return err
		}
	}
	return writeJSON(filepath.Join(*out, "split.json"), Split{
		DatasetDigest: ds.Digest(), Rows: ds.Rows(), Features: ds.Features, Target: ds.Target,
		Seed: *seed, TestFraction: *fraction,
		TrainDigest: trainSet.Digest(), TrainRows: trainSet.Rows(),
		TestDigest: testSet.Digest(), TestRows: testSet.Rows(),
	})
}

func writeCSV(path string, d *data.Dataset) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return data.WriteFile(path, d)
}

// trainCmd is the built-in trainer behind trainer contract v1, so that the
// module runs it exactly as it runs a user's trainer image.
func trainCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	name := fs.String("name", "", "model name")
	version := fs.String("version", "", "model version")
	target := fs.String("target", "", "target column of train.csv")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dataDir, out := os.Getenv(train.EnvData), os.Getenv(train.EnvOut)
	if dataDir == "" || out == "" {
		return fmt.Errorf("%s and %s must be set (trainer contract v1)", train.EnvData, train.EnvOut)
	}
	seed, err := strconv.ParseInt(os.Getenv(train.EnvSeed), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", train.EnvSeed, err)
	}
	var pm map[string]any
	if err := json.Unmarshal([]byte(os.Getenv(train.EnvParams)), &pm); err != nil {
		return fmt.Errorf("%s: %w", train.EnvParams, err)
	}
	p, err := train.DecodeParams(pm)
	if err != nil {
		return err
	}
	ds, err := data.Load(ctx, filepath.Join(dataDir, train.TrainCSV), *target)
	if err != nil {
		return err
	}
	res, err := train.Builtin(ctx, ds, p, seed)
	if err != nil {
		return err
	}
	res.Model.Name, res.Model.Version = *name, *version
	if err := train.WriteModel(filepath.Join(out, "model"), res.Model); err != nil {
		return err
	}
	return writeJSON(filepath.Join(out, train.TrainReport), map[string][]float64{"loss": res.Loss})
}

// evaluateCmd is the built-in evaluator behind evaluator contract v1.
func evaluateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("evaluate", flag.ContinueOnError)
	target := fs.String("target", "", "target column of test.csv")
	if err := fs.Parse(args); err != nil {
		return err
	}
	modelDir, dataDir, out := os.Getenv(evaluate.EnvModel), os.Getenv(evaluate.EnvData), os.Getenv(evaluate.EnvOut)
	if modelDir == "" || dataDir == "" || out == "" {
		return fmt.Errorf("%s, %s and %s must be set (evaluator contract v1)", evaluate.EnvModel, evaluate.EnvData, evaluate.EnvOut)
	}
	b, err := os.ReadFile(filepath.Join(modelDir, model.FileName))
	if err != nil {
		return err
	}
	m, err := model.Decode(b)
	if err != nil {
		return fmt.Errorf("model %s: %w", modelDir, err)
	}
	test, err := data.Load(ctx, filepath.Join(dataDir, evaluate.TestCSV), *target)
	if err != nil {
		return err
	}
	loss, err := evaluate.Builtin(m, test)
	if err != nil {
		return err
	}
	// The model's predictions too, for the smoke test to compare with.
	pred := make([]float64, test.Rows())
	var text []string
	for i := range pred {
		text = test.RowText(text, i)
		if pred[i], err = m.PredictRow(test.Row(i), text); err != nil {
			return test.CellError(i, 0, err)
		}
	}
	return writeJSON(filepath.Join(out, evaluate.Predictions), map[string][]float64{"per_example_loss": loss, "predictions": pred})
}

// smokeCmd is the smoke stage (pipeline.Smoke) on the image step's output:
// the image started from its layers answers every test row as the
// evaluator predicted it. It writes smoke.json (pipeline.SmokeOutput), for
// the provenance, and fails the release when the check does.
func smokeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("smoke", flag.ContinueOnError)
	specPath := fs.String("spec", "", "modelci.yaml")
	imageDir := fs.String("image", "", "the image step's output directory (oci/, image.json)")
	testCSV := fs.String("test", "", "the test split's test.csv")
	preds := fs.String("predictions", "", "the evaluator's predictions.json")
	out := fs.String("out", "", "output directory: smoke.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sp, err := spec.Load(*specPath)
	if err != nil {
		return err
	}
	test, err := data.Load(ctx, *testCSV, sp.Data.Target)
	if err != nil {
		return err
	}
	scores, err := evaluate.ReadScores(*preds, test.Rows())
	if err != nil {
		return err
	}
	var img Image
	b, err := os.ReadFile(filepath.Join(*imageDir, "image.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &img); err != nil {
		return fmt.Errorf("image.json: %w", err)
	}
	h, err := v1.NewHash(img.Digest)
	if err != nil {
		return fmt.Errorf("image.json: %w", err)
	}
	lay := filepath.Join(*imageDir, "oci")
	ref, err := oci.LayoutRef(lay, h)
	if err != nil {
		return err
	}
	res, line, err := pipeline.Smoke(ctx, pipeline.SmokeInput{
		Spec: sp, Test: test, Predictions: scores.Predictions, Log: os.Stderr,
		Image: &pipeline.ImageOutput{Ref: ref.String(), Digest: img.Digest, MediaType: string(types.OCIManifestSchema1), Tag: img.Tag, Layout: lay},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "smoke:", line)
	return writeJSON(filepath.Join(*out, "smoke.json"), res)
}

func imageCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	modelDir := fs.String("model", "", "model directory")
	runtimeBin := fs.String("runtime", "", "modelci runtime binary for linux/"+runtime.GOARCH)
	name := fs.String("name", "", "model name")
	version := fs.String("version", "", "model version")
	dataset := fs.String("dataset-digest", "", "sha256:… of the data set")
	created := fs.Int64("created", 0, "creation time, seconds since the Unix epoch (SOURCE_DATE_EPOCH)")
	out := fs.String("out", "", "output directory: oci/ (layout), image.tar, image.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lay := filepath.Join(*out, "oci")
	res, err := image.Run(ctx, image.Input{
		ModelDir: *modelDir, Name: *name, Version: *version, DatasetDigest: *dataset,
		Base: "scratch", Platforms: []string{"linux/" + runtime.GOARCH},
		Created: time.Unix(*created, 0).UTC(),
		Runtime: func(context.Context, v1.Platform) (string, error) { return *runtimeBin, nil },
		Layout:  lay,
	})
	if err != nil {
		return err
	}
	// A tarball of the one image, for Container.Import.
	p, err := layout.FromPath(lay)
	if err != nil {
		return err
	}
	img, err := p.Image(res.Digest)
	if err != nil {
		return fmt.Errorf("read back %s: %w", res.Digest, err)
	}
	if err := tarball.WriteToFile(filepath.Join(*out, "image.tar"), nil, img); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	return writeJSON(filepath.Join(*out, "image.json"), Image{Digest: res.Digest.String(), Tag: res.Tag})
}

func pushCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	lay := fs.String("layout", "", "OCI layout directory")
	digest := fs.String("digest", "", "digest of the image in the layout")
	to := fs.String("to", "", "HOST/REPO:TAG")
	insecure := fs.Bool("insecure", false, "plain HTTP (a registry reached through a tunnel)")
	username := fs.String("username", "", "registry user (password in MODELCI_REGISTRY_PASSWORD)")
	overwrite := fs.Bool("allow-overwrite", false, "move an existing tag to another digest")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var opts []registry.Option
	if *insecure {
		opts = append(opts, registry.WithInsecure())
	}
	if *username != "" {
		opts = append(opts, registry.WithCredentials(*username, os.Getenv("MODELCI_REGISTRY_PASSWORD")))
	}
	if *overwrite {
		opts = append(opts, registry.WithAllowOverwrite())
	}
	abs, err := filepath.Abs(*lay)
	if err != nil {
		return err
	}
	pushed, err := registry.Copy(ctx, oci.LayoutScheme+abs+"@"+*digest, *to, opts...)
	if err != nil {
		return err
	}
	fmt.Println(pushed.Ref)
	return nil
}

func signCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	ref := fs.String("ref", "", "image reference with its digest")
	key := fs.String("key", "", "cosign private key file (password in MODELCI_KEY_PASSWORD); keyless without")
	insecure := fs.Bool("insecure", false, "plain HTTP (a registry reached through a tunnel)")
	gate := fs.String("gate", "", "gate attestation predicate (JSON) to attest")
	provenance := fs.String("provenance", "", "SLSA provenance predicate (JSON) to attest")
	metrics := fs.String("metrics", "", "metrics.json to attach, signed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The module hands the password and the OIDC token over as secrets in
	// the environment; it sets no password for a key that has none, which
	// cosign encrypts under the empty one.
	c := pipeline.SignerConfig{Keyless: *key == ""}
	if *key != "" {
		c.Key, c.Password = *key, []byte(os.Getenv(sign.EnvKeyPassword))
	}
	src, err := pipeline.Signer(c)
	if err != nil {
		return err
	}
	var opts []sign.Option
	if *insecure {
		opts = append(opts, sign.WithInsecure())
	}
	res, err := sign.Sign(ctx, *ref, src, opts...)
	if err != nil {
		return err
	}
	// The same attestations `modelci run` makes, so that deploy and promote
	// accept what the module signed.
	for _, a := range []struct{ path, predicateType string }{
		{*gate, modelgate.GatePredicateType},
		{*provenance, sign.ProvenancePredicateType},
	} {
		if a.path == "" {
			continue
		}
		b, err := os.ReadFile(a.path)
		if err != nil {
			return err
		}
		if _, err := sign.Attest(ctx, *ref, a.predicateType, json.RawMessage(b), src, opts...); err != nil {
			return err
		}
	}
	if *metrics != "" {
		b, err := os.ReadFile(*metrics)
		if err != nil {
			return err
		}
		if _, err := sign.AttachMetrics(ctx, *ref, b, src, opts...); err != nil {
			return err
		}
	}
	fmt.Println(res.Tag)
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// digestCmd prints a directory's digest the way pipeline records the model
// directory (pipeline.DigestTree). The Dagger tests compare it with
// `modelci run`'s record.
func digestCmd(_ context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one directory, got %d arguments", len(args))
	}
	d, err := pipeline.DigestTree(args[0])
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
