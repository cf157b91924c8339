package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HistoryLimit is how many entries the history keeps (a ConfigMap holds at most 1 MiB).
const HistoryLimit = 50

// historyKey is the ConfigMap key holding the JSON list of entries.
const historyKey = "history.json"

// Entry statuses.
const (
	StatusDeployed = "deployed" // rolled out and serving
	StatusFailed   = "failed"   // did not roll out; the previous release was restored if there was one
	StatusAborted  = "aborted"  // a canary analysis failed; stable was left as it was
)

// Entry actions.
const (
	ActionDeploy       = "deploy"
	ActionRollback     = "rollback"
	ActionAutoRollback = "auto-rollback"
)

// Entry is one event of an app's release history, kept in the cluster.
type Entry struct {
	Revision int    `json:"revision"`
	Version  string `json:"version"`
	Image    string `json:"image"`
	// Model is the ModelPack artifact the release mounts (model_source:
	// volume); Image is then its runtime image.
	Model    string    `json:"model,omitempty"`
	Verdict  string    `json:"verdict,omitempty"`
	Time     time.Time `json:"time"`
	RunID    string    `json:"run_id,omitempty"`
	Who      string    `json:"who,omitempty"`
	Action   string    `json:"action"`
	Strategy string    `json:"strategy,omitempty"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	// Config is the deploy configuration the release ran with, so that a rollback from any
	// machine restores it exactly.
	Config Config `json:"config"`
	// Promotion is the registry's signed promotion attestation that brought
	// this release in (history --env adds it; the cluster never stores it).
	Promotion *Promotion `json:"promotion,omitempty"`
}

// Promotion is the audit record a promotion attestation holds.
type Promotion struct {
	From     string    `json:"from"`
	Who      string    `json:"who"`
	When     time.Time `json:"when"`
	Reason   string    `json:"reason,omitempty"`
	Approved bool      `json:"approved,omitempty"`
	// PreviousVersion is the version the target ran before.
	PreviousVersion string `json:"previous_version,omitempty"`
}

func (e Entry) release(app string) Release {
	return Release{Name: app, Version: e.Version, Image: e.Image, Model: e.Model, Verdict: e.Verdict, RunID: e.RunID, Who: e.Who}
}

// HistoryName is the ConfigMap holding app's release history.
func HistoryName(app string) string { return app + "-modelci-history" }

type history struct {
	app     string
	cm      *corev1.ConfigMap // nil until first saved
	Entries []Entry
}

func (t *Target) loadHistory(ctx context.Context, ns, app string) (*history, error) {
	h := &history{app: app}
	cm, err := t.Client.CoreV1().ConfigMaps(ns).Get(ctx, HistoryName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release history %s/%s: %w", ns, HistoryName(app), classify(err))
	}
	h.cm = cm
	if s := cm.Data[historyKey]; s != "" {
		if err := json.Unmarshal([]byte(s), &h.Entries); err != nil {
			return nil, fmt.Errorf("release history %s/%s: %w", ns, HistoryName(app), err)
		}
	}
	return h, nil
}

// add appends e with the next revision number and saves the history.
func (t *Target) record(ctx context.Context, ns string, h *history, e Entry) (Entry, error) {
	e.Revision = 1
	if n := len(h.Entries); n > 0 {
		e.Revision = h.Entries[n-1].Revision + 1
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC().Truncate(time.Second)
	}
	h.Entries = append(h.Entries, e)
	if len(h.Entries) > HistoryLimit {
		h.Entries = h.Entries[len(h.Entries)-HistoryLimit:]
	}
	b, err := json.Marshal(h.Entries)
	if err != nil {
		return e, fmt.Errorf("encode release history: %w", err)
	}
	cms := t.Client.CoreV1().ConfigMaps(ns)
	if h.cm == nil {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: HistoryName(h.app), Namespace: ns, Labels: map[string]string{LabelName: h.app, LabelManagedBy: ManagedBy}},
			Data:       map[string]string{historyKey: string(b)},
		}
		h.cm, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
	} else {
		cm := h.cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[historyKey] = string(b)
		// The resourceVersion makes a concurrent change a conflict rather than a lost update.
		h.cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
	}
	if err != nil {
		return e, fmt.Errorf("save release history %s/%s: %w", ns, HistoryName(h.app), classify(err))
	}
	return e, nil
}

// current is the release serving now: the latest deployed entry.
func (h *history) current() *Entry {
	for i := len(h.Entries) - 1; i >= 0; i-- {
		if h.Entries[i].Status == StatusDeployed {
			return &h.Entries[i]
		}
	}
	return nil
}

// previous is the deployed release before the current one with another
// image or model artifact.
func (h *history) previous() *Entry {
	cur := h.current()
	if cur == nil {
		return nil
	}
	for i := len(h.Entries) - 1; i >= 0; i-- {
		e := &h.Entries[i]
		if e.Status == StatusDeployed && e.Revision < cur.Revision && (e.Image != cur.Image || e.Model != cur.Model) {
			return e
		}
	}
	return nil
}

// version is the latest deployed entry of version v.
func (h *history) version(v string) *Entry {
	for i := len(h.Entries) - 1; i >= 0; i-- {
		if e := &h.Entries[i]; e.Status == StatusDeployed && e.Version == v {
			return e
		}
	}
	return nil
}
