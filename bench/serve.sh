#!/usr/bin/env bash
# Load test of modelci's server (modelci-serve, the image's entrypoint)
# against the seed article's Flask prediction service
# (bench/peers/flask_predict.py under gunicorn, 2×cores+1 sync workers), on
# loopback, same machine, same model, same payloads (1 and 32 rows, the
# seed's {"input": …} shape). MODEL_DIR holds the built-in model.json (the
# peer computes it with numpy) or an ONNX model with model.pt beside it (the
# peer runs model.pt with torch; bench/onnx.sh trains one):
#   - peak throughput with wrk (and wrk's latency at that load),
#   - latency at a fixed rate of half each server's peak with vegeta.
# Prints req/s and p50/p99 for both and their ratios; targets: ≥ 20× Flask's
# peak throughput, p99 < 2 ms at half our peak.
#
# Servers and load generators run on disjoint CPUs (taskset), so that a
# heavy generator (vegeta) does not take the server's cores: by default the
# first half of the CPUs serve and the second half generate load.
#
# Needs go, python3 and Debian's wrk, gunicorn, python3-flask, python3-numpy;
# vegeta is installed from the Go module proxy into the cache on first use.
# Knobs: DURATION (each run, default 10s), CONNECTIONS (wrk, default 64),
# VEGETA_WORKERS (vegeta's fixed worker count, default 16: uncapped, vegeta answers
# any lag on its one core by opening thousands of connections and then
# measures its own backlog, 30 s timeouts, not the server),
# MODELCI_SERVE (a prebuilt modelci-serve), MODEL_DIR (default serve/testdata),
# PYTHON (default Debian's /usr/bin/python3, the one gunicorn runs),
# SERVER_CPUS and CLIENT_CPUS (taskset lists; default the two halves).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
vegeta_workers=${VEGETA_WORKERS:-16}
model_dir=${MODEL_DIR:-$root/serve/testdata}
bin=${XDG_CACHE_HOME:-$HOME/.cache}/modelci/bin
vegeta_version=v12.13.0
python=${PYTHON:-/usr/bin/python3}

die() { echo "bench/serve.sh: $*" >&2; exit 1; }

for t in go "$python" wrk gunicorn curl taskset; do
	command -v "$t" >/dev/null || die "$t not found; apt-get install -y wrk gunicorn python3-flask python3-numpy"
done
"$python" -c 'import flask, numpy' 2>/dev/null || die "python3-flask and python3-numpy are needed"
if [[ ! -x $bin/vegeta ]]; then
	echo "installing vegeta $vegeta_version into $bin" >&2
	GOBIN=$bin go install "github.com/tsenart/vegeta/v12@$vegeta_version"
fi
vegeta=$bin/vegeta

ncpu=$(nproc)
if ((ncpu >= 2)); then
	server_cpus=${SERVER_CPUS:-0-$((ncpu / 2 - 1))}
	client_cpus=${CLIENT_CPUS:-$((ncpu / 2))-$((ncpu - 1))}
else
	server_cpus=${SERVER_CPUS:-0} client_cpus=${CLIENT_CPUS:-0}
fi
server_cores=$(taskset -c "$server_cpus" nproc)

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

modelci=${MODELCI_SERVE:-}
if [[ -z $modelci ]]; then
	modelci=$work/modelci-serve
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$modelci" ./cmd/modelci-serve)
fi
tolerance=1e-12
if [[ -f $model_dir/model.onnx ]]; then
	"$python" -c 'import torch' 2>/dev/null || die "an ONNX model's peer runs model.pt with torch: apt-get install -y python3-torch"
	tolerance=1e-5 # float32, summed in another order
fi

# Payloads: rows near the model's means, fixed by a seed (for an ONNX model,
# the first rows of the diabetes data it was trained on).
"$python" - "$model_dir" "$work" "$root/examples/linreg/data/diabetes.csv" <<'EOF'
import csv, json, os, random, sys
d = sys.argv[1]
if os.path.exists(os.path.join(d, "model.json")):
    m = json.load(open(os.path.join(d, "model.json")))
    rng = random.Random(1)
    rows = [[round(mu + s * rng.gauss(0, 1), 4) for mu, s in zip(m["mean"], m["scale"])] for _ in range(32)]
else:
    n = len(json.load(open(os.path.join(d, "modelci.json")))["features"])
    rows = [[float(v) for v in r[:n]] for r in list(csv.reader(open(sys.argv[3])))[1:33]]
json.dump({"input": rows[0]}, open(sys.argv[2] + "/body1.json", "w"))
json.dump({"input": rows}, open(sys.argv[2] + "/body32.json", "w"))
EOF

# Start both servers on free loopback ports.
taskset -c "$server_cpus" "$modelci" --model "$model_dir" --addr 127.0.0.1:0 --role predict 2>"$work/modelci.log" &
pids+=($!)
flask_port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
workers=$((2 * server_cores + 1))
MODELCI_MODEL=$model_dir taskset -c "$server_cpus" gunicorn -w "$workers" -b "127.0.0.1:$flask_port" --chdir "$root/bench/peers" \
	--log-level warning flask_predict:app 2>"$work/flask.log" &
pids+=($!)

# Wait (up to 20 s) for the modelci log's "listening" line and Flask's health.
modelci_url='' flask_url=http://127.0.0.1:$flask_port
for _ in $(seq 200); do
	if [[ -z $modelci_url ]]; then
		addr=$(sed -n 's/.*"msg":"listening","addr":"\([^"]*\)".*/\1/p' "$work/modelci.log")
		[[ -n $addr ]] && modelci_url=http://$addr
	fi
	[[ -n $modelci_url ]] && curl -sf "$flask_url/healthz" >/dev/null && break
	sleep 0.1
done
[[ -n $modelci_url ]] || die "modelci serve did not start: $(cat "$work/modelci.log")"
curl -sf "$flask_url/healthz" >/dev/null || die "flask did not start: $(cat "$work/flask.log")"

# Same answers from both, up to summation order.
for n in 1 32; do
	a=$(curl -sf -H 'Content-Type: application/json' --data-binary @"$work/body$n.json" "$modelci_url/predict")
	b=$(curl -sf -H 'Content-Type: application/json' --data-binary @"$work/body$n.json" "$flask_url/predict")
	"$python" -c '
import json, math, sys
a, b = json.loads(sys.argv[1])["prediction"], json.loads(sys.argv[2])["prediction"]
a, b = (a, b) if isinstance(a, list) else ([a], [b])
assert len(a) == len(b) and all(math.isclose(x, y, rel_tol=float(sys.argv[3]), abs_tol=float(sys.argv[3])) for x, y in zip(a, b)), (a, b)
' "$a" "$b" "$tolerance" || die "modelci and flask disagree on body$n.json: $a vs $b"
done

# cputicks PID: CPU time (clock ticks) used so far by PID and its children
# that are alive (gunicorn's workers).
cputicks() {
	local total=0 p
	for p in "$1" $(ps -o pid= --ppid "$1"); do
		# Fields 14 and 15 of /proc/PID/stat (utime, stime), after the "(comm)".
		total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo "$total"
}

# peak URL PID N: wrk's req/s, p50 and p99 (ms) at peak, and requests per
# CPU-second of the server (robust to other load on a shared machine).
peak() {
	local out before after
	before=$(cputicks "$2")
	out=$(BODY_FILE=$work/body$3.json taskset -c "$client_cpus" wrk -t2 -c"$connections" -d"$duration" --latency \
		-s "$root/bench/serve/post.lua" "$1/predict")
	after=$(cputicks "$2")
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "$out" >&2
		die "wrk saw errors against $1"
	fi
	awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		/requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
		END {printf "%.0f %.0f %.3f %.3f\n", rps, n / (ticks / hz), ms(p50), ms(p99)}' <<<"$out"
}

# fixed URL N RATE: vegeta's p50 and p99 (ms), success ratio and the rate it
# achieved (req/s) when asked for RATE req/s.
fixed() {
	printf 'POST %s/predict\nContent-Type: application/json\n@%s\n' "$1" "$work/body$2.json" >"$work/targets"
	# Results go to a file and are summarised afterwards, so that the report
	# takes no CPU from the attack.
	taskset -c "$client_cpus" "$vegeta" attack -targets="$work/targets" -rate="$3" -duration="$duration" \
		-workers="$vegeta_workers" -max-workers="$vegeta_workers" -output="$work/results.bin"
	"$vegeta" report -type=json "$work/results.bin" |
		"$python" -c 'import json, sys; r = json.load(sys.stdin); l = r["latencies"]
print("%.3f %.3f %.4f %.0f" % (l["50th"] / 1e6, l["99th"] / 1e6, r["success"], r["throughput"]))'
}

echo "machine: $ncpu cores, load average $(cut -d' ' -f1-3 /proc/loadavg); servers on CPUs $server_cpus, load generators on $client_cpus; flask: $workers gunicorn sync workers; wrk: 2 threads, $connections connections; vegeta: $vegeta_workers workers; $duration per run"
printf '%-4s %-8s %10s %10s %10s %10s %8s %8s %10s %10s %8s\n' rows server 'peak req/s' 'req/CPU-s' 'p50@peak' 'p99@peak' 'rate' 'achieved' 'p50@rate' 'p99@rate' success
for n in 1 32; do
	declare -A rps cpu p99h
	for server in modelci flask; do
		url=$modelci_url pid=${pids[0]}
		[[ $server == flask ]] && url=$flask_url pid=${pids[1]}
		read -r r c p50 p99 < <(peak "$url" "$pid" "$n")
		rate=$((r / 2))
		read -r f50 f99 ok got < <(fixed "$url" "$n" "$rate")
		rps[$server]=$r cpu[$server]=$c p99h[$server]=$f99
		printf '%-4s %-8s %10s %10s %8sms %8sms %8s %8s %8sms %8sms %8s\n' "$n" "$server" "$r" "$c" "$p50" "$p99" "$rate" "$got" "$f50" "$f99" "$ok"
	done
	"$python" -c '
import sys
n, ours, theirs, cpu, their_cpu, p99, their_p99 = sys.argv[1], *map(float, sys.argv[2:])
ratio = ours / theirs
print("%-4s ratio    peak throughput %.1fx (target >= 20x: %s), per CPU-second %.1fx; p99 at half peak %.3f ms vs %.3f ms (target < 2 ms: %s)" % (
    n, ratio, "met" if ratio >= 20 else "MISSED", cpu / their_cpu, p99, their_p99, "met" if p99 < 2 else "MISSED"))
' "$n" "${rps[modelci]}" "${rps[flask]}" "${cpu[modelci]}" "${cpu[flask]}" "${p99h[modelci]}" "${p99h[flask]}"
done
