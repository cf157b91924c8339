package pipeline

import (
	"time"

	"github.com/modelci/modelci/modelgate"
)

// RunsSchema identifies the JSON of `modelci runs -o json`.
const RunsSchema = "modelci.dev/runs/v1"

// RunList is the runs of an output directory, oldest first.
type RunList struct {
	Schema string       `json:"schema"`
	Output string       `json:"output"`
	Runs   []RunSummary `json:"runs"`
}

// RunSummary is one run as `modelci runs` lists it.
type RunSummary struct {
	ID string `json:"id"`
	// Status is succeeded or failed, or "unreadable" when run.json cannot
	// be read (Error says why).
	Status   Status             `json:"status"`
	Verdict  modelgate.Verdict  `json:"verdict,omitempty"`
	Decision modelgate.Decision `json:"decision,omitempty"`
	Model    string             `json:"model,omitempty"`
	Version  string             `json:"version,omitempty"`
	// ImageDigest is the image the run built (tagged in the layout only
	// when the run succeeded); Ref where it was published, when it was.
	ImageDigest string    `json:"image_digest,omitempty"`
	Ref         string    `json:"ref,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	FailedStage string    `json:"failed_stage,omitempty"`
	Error       string    `json:"error,omitempty"`
}

// StatusUnreadable is a RunSummary's status when its run.json cannot be read.
const StatusUnreadable Status = "unreadable"

// Runs lists the runs recorded in output, succeeded and failed, oldest
// first. Runs still being written (or killed part-way) are not listed.
func Runs(output string) (*RunList, error) {
	ids, err := ListRuns(output)
	if err != nil {
		return nil, err
	}
	list := &RunList{Schema: RunsSchema, Output: output, Runs: []RunSummary{}}
	for _, id := range ids {
		rec, err := ReadRecord(output, id)
		if err != nil {
			list.Runs = append(list.Runs, RunSummary{ID: id, Status: StatusUnreadable, Error: err.Error()})
			continue
		}
		s := RunSummary{
			ID: id, Status: rec.Status, Verdict: rec.Verdict, Decision: rec.Decision,
			Model: rec.Model.Name, Version: rec.Model.Version,
			Started: rec.Started, Finished: rec.Finished,
			FailedStage: rec.FailedStage, Error: rec.Error,
		}
		if img := rec.Outputs.Image; img != nil {
			s.ImageDigest, s.Ref = img.Digest, img.Ref
		}
		if p := rec.Outputs.Push; p != nil && rec.Status == StatusSucceeded {
			s.Ref = p.Ref
		}
		list.Runs = append(list.Runs, s)
	}
	return list, nil
}
