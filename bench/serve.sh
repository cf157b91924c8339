#!/usr/bin/env bash
# Load test of modelci's server (modelci-serve, the image's entrypoint) on
# loopback, same machine, same model, same payloads (1 and 32 rows), against
# its peers, all measured in the same run:
#   - the no-op peer (bench/noop): an HTTP server that reads the body and
#     answers a fixed prediction, on fasthttp (modelci's HTTP stack, its
#     settings) and on net/http: what the machine and the stack allow;
#   - the seed article's Flask prediction service (bench/peers/flask_predict.py
#     under gunicorn, 2×cores+1 sync workers);
#   - a FastAPI service (bench/peers/fastapi_predict.py under uvicorn, one
#     worker per core).
# modelci is measured on /predict (the seed's {"input": …}) and on the Open
# Inference Protocol's /v2/models/NAME/infer (one [rows, features] tensor,
# nested by row, as numpy's tolist() writes it); each against the no-op
# peer given the same body. MODEL_DIR holds the built-in model.json (the
# peers compute it with numpy) or an ONNX model with model.pt beside it (the
# peers run model.pt with torch; bench/onnx.sh trains one). For each:
#   - peak throughput with wrk (and wrk's latency at that load), and
#     requests per CPU-second of the server;
#   - latency at a fixed rate of half each server's peak, with bench/load
#     (Poisson arrivals over 64 connections, latency from each arrival);
#     the fasthttp no-op is measured at modelci's rate too, the floor that
#     this machine and load generator set.
# Prints req/s and p50/p99 and every ratio; targets: modelci ≥ 0.8× the
# fasthttp no-op's peak at 1 row and ≥ 0.6× at 32 rows (on both routes),
# p99 < 1 ms at half modelci's peak, ≥ 20× Flask's peak.
#
# wrk runs one thread per load CPU: two threads on one CPU took turns and
# measured each other's waits (the no-op's peak fell from 67k to 48k req/s
# against one thread). For the fixed rate, vegeta (used before) could not
# keep 24k req/s on its one CPU and put the no-op's own p99 at 1.8 ms at
# 13.6k req/s, and wrk's millisecond timers send paced requests in bursts
# (about 20 at once at 20k req/s): bench/load says why it is neither.
#
# Servers and load generators run on disjoint CPUs (taskset), so that a
# load generator does not take the server's cores: by default the
# first half of the CPUs serve and the second half generate load (on a
# 2-core machine: server on CPU 0, load on CPU 1). Servers run one at a time,
# but for modelci and the fasthttp no-op, which serve side by side while
# their runs alternate.
#
# Needs go, python3 and Debian's wrk, gunicorn, python3-flask,
# python3-numpy, python3-fastapi, python3-uvicorn.
# Knobs: DURATION (each run, default 10s), CONNECTIONS (wrk, default 64),
# ROUNDS (alternating peak runs of modelci and the fasthttp no-op, default 3),
# FIXED (the fixed-rate generator: load, bench/load's Poisson arrivals, the
# default; or wrk, its paced connections, bursty but idle between ticks),
# MODELCI_SERVE (a prebuilt modelci-serve), MODEL_DIR (default serve/testdata),
# PYTHON (default Debian's /usr/bin/python3, the one gunicorn runs),
# SERVER_CPUS and CLIENT_CPUS (taskset lists; default the two halves),
# PEERS (which peers to run, default "noop-fasthttp noop-nethttp flask fastapi").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
rounds=${ROUNDS:-3}
fixed_gen=${FIXED:-load}
[[ $fixed_gen == load || $fixed_gen == wrk ]] || { echo "bench/serve.sh: FIXED=$fixed_gen: want load or wrk" >&2; exit 1; }
model_dir=${MODEL_DIR:-$root/serve/testdata}
python=${PYTHON:-/usr/bin/python3}
peers=${PEERS:-noop-fasthttp noop-nethttp flask fastapi}

die() { echo "bench/serve.sh: $*" >&2; exit 1; }

for t in go "$python" wrk gunicorn curl taskset; do
	command -v "$t" >/dev/null || die "$t not found; apt-get install -y wrk gunicorn python3-flask python3-numpy python3-fastapi python3-uvicorn"
done
"$python" -c 'import flask, numpy, fastapi, uvicorn' 2>/dev/null ||
	die "python3-flask, python3-numpy, python3-fastapi and python3-uvicorn are needed"
ncpu=$(nproc)
if ((ncpu >= 2)); then
	server_cpus=${SERVER_CPUS:-0-$((ncpu / 2 - 1))}
	client_cpus=${CLIENT_CPUS:-$((ncpu / 2))-$((ncpu - 1))}
else
	server_cpus=${SERVER_CPUS:-0} client_cpus=${CLIENT_CPUS:-0}
fi
server_cores=$(taskset -c "$server_cpus" nproc)
client_cores=$(taskset -c "$client_cpus" nproc)

work=$(mktemp -d)
pid=''
all_pids=()
cleanup() {
	for p in "${all_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

modelci=${MODELCI_SERVE:-}
if [[ -z $modelci ]]; then
	modelci=$work/modelci-serve
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$modelci" ./cmd/modelci-serve)
fi
noop=$work/noop load=$work/load
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$noop" ./bench/noop &&
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$load" ./bench/load)
tolerance=1e-12
if [[ -f $model_dir/model.onnx ]]; then
	"$python" -c 'import torch' 2>/dev/null || die "an ONNX model's peer runs model.pt with torch: apt-get install -y python3-torch"
	tolerance=1e-5 # float32, summed in another order
fi

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME: starts the server NAME on the server CPUs, sets pid and url,
# and waits (up to 30 s) until it answers.
start() {
	local log=$work/$1.log port
	port=$(free_port)
	case $1 in
	modelci)
		taskset -c "$server_cpus" "$modelci" --model "$model_dir" --addr "127.0.0.1:$port" --role predict 2>"$log" &
		pid=$! probe=/readyz ;;
	noop-fasthttp | noop-nethttp)
		local stack=fasthttp
		[[ $1 == noop-nethttp ]] && stack=net/http
		taskset -c "$server_cpus" "$noop" --stack "$stack" --addr "127.0.0.1:$port" 2>"$log" &
		pid=$! probe=/predict ;;
	flask)
		MODELCI_MODEL=$model_dir taskset -c "$server_cpus" gunicorn -w $((2 * server_cores + 1)) -b "127.0.0.1:$port" \
			--chdir "$root/bench/peers" --log-level warning flask_predict:app 2>"$log" &
		pid=$! probe=/healthz ;;
	fastapi)
		MODELCI_MODEL=$model_dir taskset -c "$server_cpus" "$python" -m uvicorn --app-dir "$root/bench/peers" --workers "$server_cores" \
			--host 127.0.0.1 --port "$port" --log-level warning fastapi_predict:app 2>"$log" &
		pid=$! probe=/healthz ;;
	esac
	url=http://127.0.0.1:$port
	all_pids+=("$pid")
	for _ in $(seq 300); do
		curl -sf -o /dev/null "$url$probe" 2>/dev/null && return
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	die "$1 did not start: $(cat "$log")"
}

stop() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=''
}

# Payloads: rows near the model's means, fixed by a seed (for an ONNX model,
# the first rows of the diabetes data it was trained on): the seed's shape
# (body1.json, body32.json) and the V2 protocol's (v2body1.json, v2body32.json),
# its input named and typed as the model's V2 metadata says (meta.json).
start modelci
curl -sf "$url/v2/models/$("$python" -c 'import json, os, sys
d = sys.argv[1]
f = "model.json" if os.path.exists(os.path.join(d, "model.json")) else "modelci.json"
print(json.load(open(os.path.join(d, f)))["name"])' "$model_dir")" >"$work/meta.json" || die "no V2 model metadata"
stop
"$python" - "$model_dir" "$work" "$root/examples/linreg/data/diabetes.csv" <<'EOF'
import csv, json, os, random, sys
d, work = sys.argv[1], sys.argv[2]
if os.path.exists(os.path.join(d, "model.json")):
    m = json.load(open(os.path.join(d, "model.json")))
    rng = random.Random(1)
    rows = [[round(mu + s * rng.gauss(0, 1), 4) for mu, s in zip(m["mean"], m["scale"])] for _ in range(32)]
else:
    n = len(json.load(open(os.path.join(d, "modelci.json")))["features"])
    rows = [[float(v) for v in r[:n]] for r in list(csv.reader(open(sys.argv[3])))[1:33]]
meta = json.load(open(os.path.join(work, "meta.json")))
inp = meta["inputs"][0]
for n in (1, 32):
    json.dump({"input": rows[0] if n == 1 else rows[:n]}, open(os.path.join(work, "body%d.json" % n), "w"))
    json.dump({"inputs": [{"name": inp["name"], "shape": [n, len(rows[0])], "datatype": inp["datatype"], "data": rows[:n]}]},
              open(os.path.join(work, "v2body%d.json" % n), "w"))
EOF
model_name=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' "$work/meta.json")
v2path=/v2/models/$model_name/infer

# cputicks PID: CPU time (clock ticks) used so far by PID and its children
# that are alive (gunicorn's and uvicorn's workers).
cputicks() {
	local total=0 p t
	for p in "$1" $(ps -o pid= --ppid "$1"); do
		# Fields 14 and 15 of /proc/PID/stat (utime, stime), after the "(comm)".
		t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		total=$((total + ${t:-0}))
	done
	echo "$total"
}

# peak URL PATH BODY: wrk's req/s, p50 and p99 (ms) at peak, and requests per
# CPU-second of the server (robust to other load on a shared machine).
peak() {
	local out before after
	before=$(cputicks "$pid")
	out=$(BODY_FILE=$3 taskset -c "$client_cpus" wrk -t"$client_cores" -c"$connections" -d"$duration" --latency \
		-s "$root/bench/serve/post.lua" "$1$2")
	after=$(cputicks "$pid")
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "$out" >&2
		die "wrk saw errors against $1$2"
	fi
	awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		/requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
		END {printf "%.0f %.0f %.3f %.3f\n", rps, (ticks > 0 ? n / (ticks / hz) : 0), ms(p50), ms(p99)}' <<<"$out"
}

# fixed URL PATH BODY RATE: p50 and p99 (ms), success ratio and the rate
# achieved (req/s) when requests arrive as a Poisson process of RATE per
# second (bench/load; latency from each arrival, waits for a free
# connection included).
# With FIXED=wrk, wrk's paced connections (bench/serve/rate.lua) instead;
# a short first run measures what each request adds to the wait (latency
# and wrk's own time), and the measured one subtracts it.
fixed() {
	if [[ $fixed_gen == load ]]; then
		taskset -c "$client_cpus" "$load" --url "$1$2" --body "$3" --rate "$4" --duration "$duration" \
			--connections "$connections" | awk '{print $1, $3, $6, $7}'
		return
	fi
	local think out achieved
	think=$(awk -v c="$connections" -v r="$4" 'BEGIN {printf "%.4f", c * 1000 / r}')
	achieved=$(THINK_MS=$think BODY_FILE=$3 taskset -c "$client_cpus" wrk -t"$client_cores" -c"$connections" -d2s \
		-s "$root/bench/serve/rate.lua" "$1$2" | awk '/Requests\/sec/ {print $2}')
	think=$(awk -v c="$connections" -v r="$4" -v a="$achieved" -v t="$think" \
		'BEGIN {x = t - (c * 1000 / a - c * 1000 / r); printf "%.4f", (x > 0 ? x : 0)}')
	out=$(THINK_MS=$think BODY_FILE=$3 taskset -c "$client_cpus" wrk -t"$client_cores" -c"$connections" -d"$duration" \
		--latency -s "$root/bench/serve/rate.lua" "$1$2")
	awk '
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		/requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
		/Non-2xx/ {bad+=$NF} /Socket errors/ {gsub(",", ""); bad+=$4+$6+$8+$10}
		END {printf "%.3f %.3f %.4f %.0f\n", ms(p50), ms(p99), (n > 0 ? (n - bad) / n : 0), rps}' <<<"$out"
}

# answer URL PATH BODY: the predictions, as one JSON list.
answer() {
	curl -sf -H 'Content-Type: application/json' --data-binary @"$3" "$1$2" | "$python" -c 'import json, sys
r = json.load(sys.stdin)
y = r["outputs"][0]["data"] if "outputs" in r else r.get("prediction", r.get("predictions"))
print(json.dumps(y if isinstance(y, list) else [y]))'
}

results=$work/results.txt
: >"$results"
# line N LABEL PEAK-REQ/S REQ/CPU-S P50 P99 RATE ACHIEVED P50 P99 SUCCESS: one
# line of the table, and "label rows req/s req/CPU-s p99@rate" into $results.
line() {
	printf '%-4s %-16s %10s %10s %8sms %8sms %8s %8s %8sms %8sms %8s\n' "$@"
	echo "$2 $1 $3 $4 ${10}" >>"$results"
}

# measure SERVER ROUTE-LABEL PATH BODY N [RATE]: one line of the table, and
# "label rows req/s req/CPU-s p99@rate" into $results. RATE: the fixed
# rate, "half" for half this server's peak; none for no fixed rate.
measure() {
	local r c p50 p99 rate f50='-' f99='-' ok='-' got='-'
	read -r r c p50 p99 < <(peak "$url" "$3" "$4")
	rate=$((r / 2))
	if [[ -n ${6:-} && $6 != half ]]; then
		rate=$6
	fi
	if [[ -n ${6:-} ]]; then
		read -r f50 f99 ok got < <(fixed "$url" "$3" "$4" "$rate")
	fi
	line "$5" "$2" "$r" "$c" "$p50" "$p99" "$rate" "$got" "$f50" "$f99" "$ok"
}

echo "machine: $ncpu cores, load average $(cut -d' ' -f1-3 /proc/loadavg); servers on CPUs $server_cpus, load generators on $client_cpus;" \
	"flask: $((2 * server_cores + 1)) gunicorn sync workers; fastapi: $server_cores uvicorn workers" \
	"($("$python" -c 'import importlib.util as u; print("uvloop" if u.find_spec("uvloop") else "asyncio", "+", "httptools" if u.find_spec("httptools") else "h11")'));" \
	"wrk: $client_cores thread(s), $connections connections; fixed rate: $fixed_gen; $duration per run"
printf '%-4s %-16s %10s %10s %10s %10s %8s %8s %10s %10s %8s\n' rows server 'peak req/s' 'req/CPU-s' 'p50@peak' 'p99@peak' 'rate' 'achieved' 'p50@rate' 'p99@rate' success

# modelci and the fasthttp no-op serve side by side (the one not under
# load takes no CPU) and their peaks alternate, ROUNDS times: a shared
# machine drifts between minutes far more than between seconds, so each
# ratio is taken within a round and the median over rounds reported, with
# the median peaks. modelci's answers are the reference for the others.
start modelci
m_url=$url m_pid=$pid
for n in 1 32; do
	answer "$url" /predict "$work/body$n.json" >"$work/ref$n.json"
	[[ $(answer "$url" "$v2path" "$work/v2body$n.json") == "$(cat "$work/ref$n.json")" ]] ||
		die "modelci's V2 answer differs from its /predict answer on $n rows"
done
n_url='' n_pid=''
if [[ " $peers " == *" noop-fasthttp "* ]]; then
	start noop-fasthttp
	n_url=$url n_pid=$pid
fi
: >"$work/rounds"
for _ in $(seq "$rounds"); do
	for n in 1 32; do
		for route in predict v2; do
			body=$work/body$n.json path=/predict
			[[ $route == v2 ]] && body=$work/v2body$n.json path=$v2path
			pid=$m_pid
			echo "modelci/$route $n $(peak "$m_url" "$path" "$body")" >>"$work/rounds"
			if [[ -n $n_url ]]; then
				pid=$n_pid label="noop-fasthttp"
				[[ $route == v2 ]] && label="noop-fasthttp/v2"
				echo "$label $n $(peak "$n_url" /predict "$body")" >>"$work/rounds"
			fi
		done
	done
done
# The median of each column over the rounds, and of each round's
# modelci/no-op ratios (into $ratios, with every round's ratio).
ratios=$work/ratios
"$python" - "$work/rounds" "$ratios" >"$work/medians" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for l in open(sys.argv[1]):
    label, n, *v = l.split()
    runs[(label, n)].append([float(x) for x in v])
for (label, n), vs in runs.items():
    cols = [statistics.median(c) for c in zip(*vs)]
    print(label, n, "%.0f %.0f %.3f %.3f" % tuple(cols))
with open(sys.argv[2], "w") as out:
    for (label, n), vs in runs.items():
        noop = ("noop-fasthttp/v2" if label.endswith("/v2") else "noop-fasthttp", n)
        if label.startswith("modelci/") and noop in runs:
            rs = [a[0] / b[0] for a, b in zip(vs, runs[noop])]
            cs = [a[1] / b[1] for a, b in zip(vs, runs[noop]) if b[1]]
            out.write("%s %s %.3f %.3f %s\n" % (label, n, statistics.median(rs), statistics.median(cs) if cs else 0,
                                              ",".join("%.2f" % x for x in rs)))
EOF
# The fixed rate, half modelci's median peak, for modelci and then for the
# no-op: the floor that this machine and load generator set.
for n in 1 32; do
	for route in predict v2; do
		body=$work/body$n.json path=/predict
		[[ $route == v2 ]] && body=$work/v2body$n.json path=$v2path
		read -r _ _ r c p50 p99 < <(grep "^modelci/$route $n " "$work/medians")
		rate=$((r / 2))
		read -r f50 f99 ok got < <(fixed "$m_url" "$path" "$body" "$rate")
		line "$n" "modelci/$route" "$r" "$c" "$p50" "$p99" "$rate" "$got" "$f50" "$f99" "$ok"
		if [[ -n $n_url ]]; then
			label="noop-fasthttp"
			[[ $route == v2 ]] && label="noop-fasthttp/v2"
			read -r _ _ r c p50 p99 < <(grep "^$label $n " "$work/medians")
			read -r f50 f99 ok got < <(fixed "$n_url" /predict "$body" "$rate")
			line "$n" "$label" "$r" "$c" "$p50" "$p99" "$rate" "$got" "$f50" "$f99" "$ok"
		fi
	done
done
pid=$m_pid
stop
if [[ -n $n_pid ]]; then
	pid=$n_pid
	stop
fi
for peer in $peers; do
	[[ $peer == noop-fasthttp ]] && continue
	start "$peer"
	for n in 1 32; do
		case $peer in
		noop-*)
			measure "$peer" "$peer" /predict "$work/body$n.json" "$n"
			;;
		*)
			# Same answers as modelci, up to summation order.
			"$python" -c '
import json, math, sys
a, b = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
b = b if isinstance(b, list) else [b]
assert len(a) == len(b) and all(math.isclose(x, y, rel_tol=float(sys.argv[3]), abs_tol=float(sys.argv[3])) for x, y in zip(a, b)), (a, b)
' "$work/ref$n.json" "$(answer "$url" /predict "$work/body$n.json")" "$tolerance" ||
				die "modelci and $peer disagree on body$n.json"
			measure "$peer" "$peer" /predict "$work/body$n.json" "$n" half
			;;
		esac
	done
	stop
done

"$python" - "$results" "$ratios" "$rounds" <<'EOF'
import sys
r = {}
for line in open(sys.argv[1]):
    label, n, rps, cpu, p99 = line.split()
    r[(label, n)] = (float(rps), float(cpu), None if p99 == "-" else float(p99))
def ratio(a, b, n):
    return r[(a, n)][0] / r[(b, n)][0] if (a, n) in r and (b, n) in r else None
# modelci against the fasthttp no-op: the median of the rounds' ratios.
rounds = {}
for line in open(sys.argv[2]):
    label, n, x, cpu, each = line.split()
    rounds[(label, n)] = (float(x), float(cpu), each)
def verdict(x, target):
    return "n/a" if x is None else ("met" if x >= target else "MISSED")
print("ratios (peak req/s, same run; against the fasthttp no-op the median of %d rounds' ratios):" % int(sys.argv[3]))
for n, target in (("1", 0.8), ("32", 0.6)):
    for route, noop in (("modelci/predict", "noop-fasthttp"), ("modelci/v2", "noop-fasthttp/v2")):
        # Per CPU-second of the server: what a shared machine's other load
        # takes from the server does not count, where it does in req/s.
        x, cpu, each = rounds.get((route, n), (None, None, "n/a"))
        floor = r[(noop, n)][2] if (noop, n) in r else None
        print("%-4s %-16s %s x the fasthttp no-op (target >= %.1fx: %s; rounds %s), per CPU-second %s; p99 at half peak %.3f ms (target < 1 ms: %s; the no-op at that rate: %s)" % (
            n, route, "n/a" if x is None else "%.2f" % x, target, verdict(x, target), each, "n/a" if cpu is None else "%.2fx" % cpu,
            r[(route, n)][2], "met" if r[(route, n)][2] < 1 else "MISSED", "n/a" if floor is None else "%.3f ms" % floor))
    for peer, target in (("noop-nethttp", None), ("flask", 20), ("fastapi", None)):
        x = ratio("modelci/predict", peer, n)
        if x is None:
            continue
        extra = "" if target is None else " (target >= %dx: %s)" % (target, verdict(x, target))
        cpu = r[("modelci/predict", n)][1] / r[(peer, n)][1] if r[(peer, n)][1] else float("nan")
        print("%-4s modelci/predict  %.2fx %s%s, per CPU-second %.2fx" % (n, x, peer, extra, cpu))
    x = ratio("noop-fasthttp", "noop-nethttp", n)
    if x is not None:
        print("%-4s stacks           the fasthttp no-op answers %.2fx the net/http no-op" % (n, x))
EOF
