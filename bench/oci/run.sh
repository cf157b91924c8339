#!/usr/bin/env bash
# Benchmarks modelci's image build and push (image.Run into an OCI layout,
# then a push by digest, as `modelci run --repository` does) against peers
# measured in the same run, all against `modelci registry serve` processes
# on loopback:
#   (a) build+push of the example image vs `ko build` of the same serving
#       binary (github.com/modelci/modelci/cmd/modelci) to the same
#       registry, ko on a local empty base image (it pulls nothing remote);
#   (b) bytes uploaded on a retrain ÷ the image's size;
#   (c) a 1 GiB weights file: build+push throughput and the client's peak
#       RSS (it must stream: under 100 MB), to a separate registry process.
# Usage: bench/oci/run.sh   (from anywhere; needs go, /usr/bin/time)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
work="$(mktemp -d "${TMPDIR:-/tmp}/modelci-bench-oci.XXXXXX")"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

[[ -x /usr/bin/time ]] || { echo "bench/oci: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }

echo "building modelci, the bench driver and ko" >&2
go build -trimpath -o "$work/oci" ./bench/oci
ko="$("$root/tools/ko/build.sh")"
oci="$work/oci"
serve=("$work/modelci" registry serve --addr 127.0.0.1:0 --root)
if ! go build -trimpath -o "$work/modelci" ./cmd/modelci 2>"$work/modelci-build.log"; then
	# Same registry.Serve code; the CLI is only its flag parsing.
	echo "bench/oci: cmd/modelci does not build; serving with the driver's registry.Serve:" >&2
	cat "$work/modelci-build.log" >&2
	serve=("$oci" serve)
fi

# start_registry NAME: runs `modelci registry serve` on a free loopback
# port over $work/NAME and sets $addr and $pid once it logs "listening".
start_registry() {
	local fifo="$work/$1.fifo" line fd
	mkfifo "$fifo"
	"${serve[@]}" "$work/$1" 2>"$fifo" &
	pid=$!
	pids+=("$pid")
	exec {fd}<"$fifo"
	addr=""
	while IFS= read -r -u "$fd" line; do
		if [[ $line == *'"listening"'* ]]; then
			addr="$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' <<<"$line")"
			break
		fi
	done
	[[ -n $addr ]] || { echo "bench/oci: registry $1 did not start" >&2; exit 1; }
	cat <&"$fd" >"$work/$1.log" &
	pids+=($!)
}

# field JSON KEY prints a number or string field of a one-line JSON object.
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
# now prints seconds since the epoch with nanoseconds.
now() { date +%s.%N; }
# median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

start_registry reg
reg="$addr"
start_registry big
big="$addr" big_pid="$pid"
echo "registries: $reg (example, ko) and $big (1 GiB)" >&2

# The example's model document, as the built-in trainer writes it.
model="$work/model"
mkdir -p "$model"
cat >"$model/model.json" <<'JSON'
{"schema":"modelci.dev/model/linear/v1","name":"diabetes","version":"1.0.0",
"features":["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],"target":"target",
"mean":[48.5,1.46,26.37,94.64,189.14,115.43,49.78,4.07,4.64,91.26],
"scale":[13.1,0.49,4.41,13.83,34.6,30.41,12.92,1.29,0.52,11.48],
"weights":[-0.48,-11.41,24.73,15.42,-37.68,22.67,4.81,8.42,35.73,3.22],
"bias":152.13}
JSON

# Warm both sides' caches: modelci's runtime binary cache (keyed by source
# digest) and, for ko, the Go build cache; ko builds without pushing.
runtime="$("$oci" runtime)"
base="$("$oci" base "$reg/ko/base")"
export KO_DEFAULTBASEIMAGE="$base" KO_DOCKER_REPO="$reg/ko/example"
ko_flags=(build --bare --sbom=none --platform=linux/amd64 ./cmd/modelci)
"$ko" "${ko_flags[@]}" --push=false >/dev/null 2>"$work/ko-warm.log"

echo "(a) example image: build+push to an empty repository, then unchanged re-pushes" >&2
first="$("$oci" push -model "$model" -runtime "$runtime" -repo "$reg/modelci/example" -tag 1.0.0)"
t0="$(now)"
"$ko" "${ko_flags[@]}" >"$work/ko.out" 2>"$work/ko.log"
t1="$(now)"
ko_first="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
ours_again=() ko_again=()
for _ in 1 2 3; do
	again="$("$oci" push -model "$model" -runtime "$runtime" -repo "$reg/modelci/example" -tag 1.0.0)"
	ours_again+=("$(field "$again" seconds)")
	t0="$(now)"
	"$ko" "${ko_flags[@]}" >/dev/null 2>>"$work/ko.log"
	t1="$(now)"
	ko_again+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
done
ours_first="$(field "$first" seconds)"
ours_med="$(median "${ours_again[@]}")" ko_med="$(median "${ko_again[@]}")"

echo "(b) retrain: bytes uploaded ÷ image size" >&2
sed 's/"bias":152.13/"bias":151.97/' "$model/model.json" >"$model/model.json.new"
mv "$model/model.json.new" "$model/model.json"
retrain="$("$oci" push -count -model "$model" -runtime "$runtime" -repo "$reg/modelci/example" -tag 1.0.1)"
# With 256 MiB of weights in their own layer: a retrain that changes only
# the small files, then one that changes the weights.
wmodel="$work/wmodel"
mkdir -p "$wmodel"
cp "$model/model.json" "$wmodel/"
head -c $((256 << 20)) /dev/urandom >"$wmodel/weights.bin"
w1="$("$oci" push -count -model "$wmodel" -runtime "$runtime" -repo "$reg/modelci/weights" -tag 1.0.0)"
sed 's/"bias":151.97/"bias":150.02/' "$model/model.json" >"$wmodel/model.json"
w2="$("$oci" push -count -model "$wmodel" -runtime "$runtime" -repo "$reg/modelci/weights" -tag 1.0.1)"
head -c $((256 << 20)) /dev/urandom >"$wmodel/weights.bin"
w3="$("$oci" push -count -model "$wmodel" -runtime "$runtime" -repo "$reg/modelci/weights" -tag 1.0.2)"
rm -rf "$wmodel"

echo "(c) 1 GiB of weights: build+push throughput and peak RSS" >&2
bmodel="$work/bmodel"
mkdir -p "$bmodel"
cp "$model/model.json" "$bmodel/"
head -c $((1 << 30)) /dev/urandom >"$bmodel/weights.bin"
sync
bigres="$(/usr/bin/time -v -o "$work/big.time" "$oci" push -model "$bmodel" -runtime "$runtime" -repo "$big/modelci/big" -tag 1.0.0)"
rss_kb="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/big.time")"
server_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$big_pid/status")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3g", a / b}'; }
mb() { awk -v a="$1" 'BEGIN {printf "%.1f MB", a / 1e6}'; }
cat <<REPORT

bench/oci ($(go env GOVERSION), $(nproc) CPUs, ko $("$ko" version 2>/dev/null || echo '?'))

(a) example image (runtime $(mb "$(stat -c %s "$runtime")") + model.json), same registry
    first push     modelci $(printf '%.3f' "$ours_first") s   ko $(printf '%.3f' "$ko_first") s   modelci/ko = $(ratio "$ours_first" "$ko_first")
    re-push (med3) modelci $(printf '%.3f' "$ours_med") s   ko $(printf '%.3f' "$ko_med") s   modelci/ko = $(ratio "$ours_med" "$ko_med")
    modelci image $(mb "$(field "$first" image_bytes)")

(b) retrain: uploaded ÷ image size
    example, new model.json          $(field "$retrain" uploaded_bytes) B of $(mb "$(field "$retrain" image_bytes)") = $(ratio "$(field "$retrain" uploaded_bytes)" "$(field "$retrain" image_bytes)")
    256 MiB weights, first push      $(mb "$(field "$w1" uploaded_bytes)") of $(mb "$(field "$w1" image_bytes)") = $(ratio "$(field "$w1" uploaded_bytes)" "$(field "$w1" image_bytes)")
    256 MiB weights, new model.json  $(field "$w2" uploaded_bytes) B of $(mb "$(field "$w2" image_bytes)") = $(ratio "$(field "$w2" uploaded_bytes)" "$(field "$w2" image_bytes)")
    256 MiB weights, new weights     $(mb "$(field "$w3" uploaded_bytes)") of $(mb "$(field "$w3" image_bytes)") = $(ratio "$(field "$w3" uploaded_bytes)" "$(field "$w3" image_bytes)")

(c) 1 GiB weights to a separate registry process
    build $(printf '%.2f' "$(field "$bigres" build_seconds)") s + push $(printf '%.2f' "$(field "$bigres" push_seconds)") s: $(awk -v b="$(field "$bigres" image_bytes)" -v s="$(field "$bigres" seconds)" 'BEGIN {printf "%.0f", b / 1e6 / s}') MB/s
    peak RSS: client $((rss_kb / 1024)) MiB (limit 100 MB), registry server $((server_kb / 1024)) MiB
REPORT
if ((rss_kb * 1024 >= 100 * 1000 * 1000)); then
	echo "bench/oci: the client's peak RSS is over 100 MB: it does not stream" >&2
	exit 1
fi
