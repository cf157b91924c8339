#!/usr/bin/env bash
# Times `dagger call release` on examples/linreg against `modelci run` on
# the same example, and prints the ratios:
#   cold   the engine's cache pruned first: the module and modelci (the step
#          runner and the runtime) are compiled, every step runs;
#   warm   the same call again with unchanged inputs: training, evaluation
#          and the image come from the engine's cache;
#   local  `modelci run` (a prebuilt binary, its runtime build cached).
# Needs a running engine: eval "$(sudo tools/dagger/engine.sh start)".
# Knobs: WARM_RUNS (default 3), SKIP_COLD=1 (keep the engine's cache).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cli=${MODELCI_DAGGER_CLI:?start the engine first: eval "\$(sudo tools/dagger/engine.sh start)"}
: "${_EXPERIMENTAL_DAGGER_RUNNER_HOST:?start the engine first}"
warm_runs=${WARM_RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

release() {
	"$cli" --progress=plain -m "$root" call release --spec examples/linreg/modelci.yaml digest \
		>"$work/digest" 2>>"$work/dagger.log"
}

cd "$root"
go build -o "$work/modelci" ./cmd/modelci
"$work/modelci" run -C examples/linreg --output-dir "$work/out" >/dev/null 2>&1 # warms the runtime cache
t0=$(now)
"$work/modelci" run -C examples/linreg --output-dir "$work/out" >"$work/local-ref" 2>/dev/null
local_s=$(elapsed "$t0" "$(now)")

cold_s=-
if [[ ${SKIP_COLD:-} != 1 ]]; then
	"$cli" --progress=plain core engine local-cache prune >/dev/null 2>>"$work/dagger.log"
	t0=$(now)
	release
	cold_s=$(elapsed "$t0" "$(now)")
fi

best=
for _ in $(seq "$warm_runs"); do
	t0=$(now)
	release
	s=$(elapsed "$t0" "$(now)")
	if [[ -z $best ]] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s; fi
done

local_digest=$(sed -n 's/.*@//p' "$work/local-ref" | tail -1)
dagger_digest=$(tr -d '[:space:]' <"$work/digest")
printf '%-28s %10s\n' "modelci run (local)" "${local_s}s"
if [[ $cold_s == - ]]; then
	printf '%-28s %10s\n' "dagger call release, cold" "skipped"
else
	printf '%-28s %10s\n' "dagger call release, cold" "${cold_s}s"
fi
printf '%-28s %10s  (best of %d)\n' "dagger call release, warm" "${best}s" "$warm_runs"
if [[ $cold_s != - ]]; then
	awk -v c="$cold_s" -v l="$local_s" 'BEGIN { printf "cold / local  %8.1fx\n", c / l }'
fi
awk -v w="$best" -v l="$local_s" 'BEGIN { printf "warm / local  %8.1fx\n", w / l }'
if [[ $local_digest == "$dagger_digest" ]]; then
	echo "same image digest both ways: $dagger_digest"
else
	echo "DIGESTS DIFFER: modelci run $local_digest, dagger $dagger_digest" >&2
	exit 1
fi
