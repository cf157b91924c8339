package stage

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
)

// ChampionSchema versions champion.json, `stage champion`'s answer.
const ChampionSchema = "modelci.dev/stage-champion/v1"

// Champion is champion.json: whether the environment runs a champion, and
// what `modelci run`'s record says of it (the baseline's digest names the
// champion's signed metrics even when they were re-scored).
type Champion struct {
	Schema   string                  `json:"schema"`
	Found    bool                    `json:"found"`
	Baseline *pipeline.BaselineInput `json:"baseline,omitempty"`
}

// championCmd finds gate.baseline.from's champion as `modelci run` does
// (pipeline.ChampionBaseline: the environment's live Deployment, its
// verified signature and signed metrics, re-scored on the candidate's test
// split when needed) and writes champion.json and, when there is one,
// baseline.json (the metrics to gate against) into --out.
func championCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("champion", flag.ContinueOnError)
	specPath := fs.String("spec", "", "modelci.yaml (gate.baseline.from, environments:, verify:)")
	metricsPath := fs.String("metrics", "", "the candidate's metrics.json")
	testPath := fs.String("test", "", "the candidate's test split (test.csv)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig with the environment's context")
	insecure := fs.Bool("insecure", false, "plain HTTP to the registry")
	out := fs.String("out", "", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := spec.Load(*specPath)
	if err != nil {
		return err
	}
	if s.Gate.Baseline.From == "" {
		return fmt.Errorf("%s: gate.baseline.from is empty: no champion to find", *specPath)
	}
	cand, err := readMetrics(*metricsPath)
	if err != nil {
		return err
	}
	test, err := data.Load(ctx, *testPath, s.Data.Target)
	if err != nil {
		return fmt.Errorf("the candidate's test split: %w", err)
	}
	opts := []pipeline.Option{pipeline.WithKubeconfig(*kubeconfig), pipeline.WithLog(os.Stderr),
		pipeline.WithRegistryAuth(os.Getenv("MODELCI_REGISTRY_USERNAME"), os.Getenv("MODELCI_REGISTRY_PASSWORD"), *insecure)}
	m, in, err := pipeline.ChampionBaseline(ctx, s, cand, test, opts...)
	if err != nil {
		// Named as the refusal without a cluster: no comparison, no release.
		return fmt.Errorf("gate.baseline.from: %s: %w: %w", s.Gate.Baseline.From, ErrNoChampion, err)
	}
	res := Champion{Schema: ChampionSchema, Found: m != nil, Baseline: in}
	if m != nil {
		b, err := m.Encode()
		if err != nil {
			return fmt.Errorf("encode the champion's metrics: %w", err)
		}
		if err := writeFile(filepath.Join(*out, "baseline.json"), b); err != nil {
			return err
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode champion.json: %w", err)
	}
	return writeFile(filepath.Join(*out, "champion.json"), b)
}
