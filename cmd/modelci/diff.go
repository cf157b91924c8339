package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/ghactions"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/spec"
)

// newDiffCmd is `modelci diff BASE CANDIDATE`: two metrics.json compared
// as `dvc metrics diff` compares metric files (ghactions.DiffMetrics). The
// reusable workflow puts its output in the pull-request comment, under the
// gate report.
func newDiffCmd() *cobra.Command {
	var (
		dir, baseName string
		out           outputOptions
	)
	cmd := &cobra.Command{
		Use:   "diff BASE CANDIDATE",
		Short: "Compare two metrics.json: metric, base, candidate, change, %",
		Long: `Compare a candidate's metrics.json with a base's (the model its pull
request's base branch trains) and print the comparison as a Markdown table:
metric, base, candidate, change and %, better or worse by the direction of
the gate in DIR/modelci.yaml (default: loss, lower is better), then the data
set and test split, the per-example count when both were scored on the same
test split, and the training parameters that changed. Relative paths are
relative to DIR. A BASE that does not exist is no base (a new model): the
table holds the candidate's values only. Exit 0 whatever changed.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := out.check(); err != nil {
				return err
			}
			metric, direction := "", ""
			sp := filepath.Join(dir, spec.FileName)
			if _, err := os.Stat(sp); err == nil {
				s, err := spec.Load(sp)
				if err != nil {
					return err
				}
				metric, direction = s.Gate.Metric, s.Gate.Direction
			}
			var base *modelgate.Metrics
			basePath := inDir(dir, a[0])
			switch _, err := os.Stat(basePath); {
			case errors.Is(err, fs.ErrNotExist):
				fmt.Fprintf(cmd.ErrOrStderr(), "diff: no base metrics at %s: the candidate's values only\n", basePath)
			case err != nil:
				return fmt.Errorf("diff: %w", err)
			default:
				if base, err = readMetrics(basePath); err != nil {
					return err
				}
			}
			candidate, err := readMetrics(inDir(dir, a[1]))
			if err != nil {
				return err
			}
			d := ghactions.DiffMetrics(base, candidate, metric, direction)
			if out.json() {
				return out.print(cmd, diffDocument(d))
			}
			if _, err := fmt.Fprint(cmd.OutOrStdout(), d.Markdown(baseName)); err != nil {
				return fmt.Errorf("diff: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&dir, "dir", "C", ".", "project directory: its modelci.yaml's gate names the metric and its direction; relative paths are relative to it")
	f.StringVar(&baseName, "base-name", "", "what the base is, for the heading (e.g. \"main at 1a2b3c4\")")
	out.AddFlags(cmd, "text (a Markdown table) or json")
	return cmd
}

// diffSchema identifies `modelci diff -o json`'s document.
const diffSchema = "modelci.dev/metrics-diff/v1"

type diffRowJSON struct {
	Metric    string   `json:"metric"`
	Base      *float64 `json:"base"`
	Candidate *float64 `json:"candidate"`
	Change    *float64 `json:"change"`
	Trend     string   `json:"trend"`
}

type diffJSON struct {
	Schema    string        `json:"schema"`
	Metric    string        `json:"metric"`
	Direction string        `json:"direction"`
	NoBase    bool          `json:"no_base"`
	SameData  bool          `json:"same_data"`
	SameSplit bool          `json:"same_split"`
	Rows      []diffRowJSON `json:"rows"`
	Params    []struct {
		Name      string `json:"name"`
		Base      string `json:"base"`
		Candidate string `json:"candidate"`
	} `json:"params"`
	Paired *struct {
		Better int `json:"better"`
		Worse  int `json:"worse"`
		Equal  int `json:"equal"`
	} `json:"paired,omitempty"`
}

// diffDocument is the diff as one JSON document with a schema.
func diffDocument(d ghactions.MetricsDiff) diffJSON {
	doc := diffJSON{Schema: diffSchema, Metric: d.Metric, Direction: d.Direction, NoBase: d.NoBase, SameData: d.SameData, SameSplit: d.SameSplit, Rows: []diffRowJSON{}}
	for _, r := range d.Rows {
		row := diffRowJSON{Metric: r.Metric, Base: r.Base, Candidate: r.Candidate, Trend: string(r.Trend())}
		if c, ok := r.Change(); ok {
			row.Change = &c
		}
		doc.Rows = append(doc.Rows, row)
	}
	for _, p := range d.Params {
		doc.Params = append(doc.Params, struct {
			Name      string `json:"name"`
			Base      string `json:"base"`
			Candidate string `json:"candidate"`
		}{p.Name, p.Base, p.Candidate})
	}
	if d.Paired != nil {
		doc.Paired = &struct {
			Better int `json:"better"`
			Worse  int `json:"worse"`
			Equal  int `json:"equal"`
		}{d.Paired.Better, d.Paired.Worse, d.Paired.Equal}
	}
	return doc
}
