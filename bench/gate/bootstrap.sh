#!/usr/bin/env bash
# The gate's bootstrap benchmark against numpy, measured in the same run.
#
#   bench/gate/bootstrap.sh [--scale RESAMPLES] [--cpu LIST]
#
# Go: BenchmarkBootstrap, the whole gate (method: bootstrap, BCa) on 10^6
# per-example losses with 10,000 resamples of 10^6 draws each (10^10 draws),
# once per GOMAXPROCS in LIST (default "1,2").
# numpy: the same resampling written naively (bootstrap_numpy.py) with
# Debian's python3-numpy, on one thread as numpy runs it. It takes minutes at
# full size, so by default it runs --scale 200 resamples and extrapolates
# linearly to 10,000 (--scale 10000 measures the full size).
set -euo pipefail

scale=200
cpus=1,2
while [ $# -gt 0 ]; do
	case "$1" in
	--scale) scale="$2"; shift 2 ;;
	--cpu) cpus="$2"; shift 2 ;;
	*) echo "usage: $0 [--scale RESAMPLES] [--cpu LIST]" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/../.."
python=/usr/bin/python3
if ! "$python" -c 'import numpy' 2>/dev/null; then
	echo "numpy missing: apt-get install -y python3-numpy" >&2
	exit 1
fi

echo "== Go: BenchmarkBootstrap (10^6 losses x 10,000 resamples), -cpu $cpus"
go_out=$(go test -run '^$' -bench '^BenchmarkBootstrap$' -benchtime 1x -cpu "$cpus" ./modelgate/)
echo "$go_out" | grep -E '^(goos|goarch|cpu|Benchmark)'

echo "== numpy: $scale of 10,000 resamples, extrapolated"
# The machine's OpenBLAS overrides would mislead numpy's build; unset them here only.
np_out=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" bench/gate/bootstrap_numpy.py --run "$scale")
echo "$np_out" | grep -v '^NUMPY_DRAWS_PER'
np_rate=$(echo "$np_out" | awk '$1 == "NUMPY_DRAWS_PER_S" {print $2}')
np_cpu_rate=$(echo "$np_out" | awk '$1 == "NUMPY_DRAWS_PER_CPU_S" {print $2}')

echo "== ratio (same machine, same run)"
# Wall-clock draws/s decide the headline; draws per CPU-second say how much
# work each side did when the machine is shared (wall time then also
# measures the neighbours).
echo "$go_out" | awk -v np="$np_rate" -v npcpu="$np_cpu_rate" '
	/^BenchmarkBootstrap/ {
		name = $1; procs = 1
		if (match(name, /-[0-9]+$/)) procs = substr(name, RSTART + 1)
		for (i = 2; i < NF; i++) {
			if ($(i+1) == "draws/s") rate = $i
			if ($(i+1) == "ns/op") ns = $i
			if ($(i+1) == "cpu-s/op") cpu = $i
		}
		printf "Go GOMAXPROCS=%d: %.3g draws/s, %.2f s for 10^10 draws (%.2f s CPU); numpy: %.3g draws/s, %.0f s; Go/numpy = %.1fx wall, %.1fx per CPU-second\n",
			procs, rate, ns / 1e9, cpu, np, 1e10 / np, rate / np, (1e10 / cpu) / npcpu
	}'
