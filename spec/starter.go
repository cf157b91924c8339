package spec

import "strings"

// Starter returns a commented modelci.yaml for a new project; it decodes
// as a valid spec (a test checks).
func Starter(name string) []byte {
	return []byte(strings.ReplaceAll(starter, "NAME", name))
}

const starter = `# modelci.yaml v1 — docs/spec.md documents every field.
apiVersion: modelci.dev/v1

model:
  name: NAME                # DNS-1123 label: names the image repository and Kubernetes objects
  version: 0.1.0            # semver without a leading v; the image tag ("+" becomes "_")

data:
  path: data/train.csv      # CSV with a header row; every column but the target is a numeric feature
  target: target            # the column to predict
  test_fraction: 0.2        # share of rows held out for evaluation, in (0, 1)
  seed: 42                  # the split and the trainer are deterministic for a seed

train:
  builtin: linear           # or command: [python3, train.py] (trainer contract v1, see README)
  params:                   # built-in linear trainer: gradient descent on the mean squared error
    epochs: 300
    learning_rate: 0.1      # α_0
    lr_decay: 0.01          # α_t = α_0 / (1 + lr_decay · t)
    clip_norm: 10           # gradient-norm clipping; 0 = off
    batch_size: 0           # 0 = full batch

# evaluate:
#   command: [python3, evaluate.py]   # evaluator contract v1; built-in models need none

gate:
  metric: loss
  direction: minimize
  threshold: 1.0            # required: the largest acceptable mean test loss
  confidence: 0.95          # decided on the confidence interval of the mean per-example loss
  method: t                 # t | bootstrap
  on_inconclusive: hold     # hold (exit 4) | fail (exit 3)

image:
  base: scratch             # the serving image: modelci's own server plus the model under /model
  platforms: [linux/amd64]

output: .modelci            # OCI layout, run records and reports
`
