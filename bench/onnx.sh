#!/usr/bin/env bash
# /predict of examples/pytorch's ONNX MLP (mlp.yaml) served by modelci's
# runtime against the same model served by torch (model.pt, TorchScript,
# under the seed's Flask service): trains it with `modelci run`, then runs
# bench/serve.sh on its model directory (1 and 32 rows, req/s and latency,
# ratios in one run). Needs what bench/serve.sh needs, plus python3-torch
# and python3-onnx.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PATH=/usr/bin:$PATH # Debian's python3, with torch
(cd "$root" && go run ./cmd/modelci run -C examples/pytorch --spec mlp.yaml --output-dir "$work/out" >/dev/null)
run=$(ls -d "$work"/out/runs/*/ | tail -1)
MODEL_DIR=${run}model exec "$root/bench/serve.sh"
