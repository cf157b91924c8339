#!/usr/bin/env bash
# Push of a large model image to Debian's docker-registry (distribution 2.8):
# modelci's push against `crane push` of the same OCI layout, in the same
# run, on loopback.
#
# What: the driver (bench/oci: `oci model`) writes a model directory of 7
# files, two small JSON files and five weights files of seeded random bytes
# (written streaming), and builds its image with stages/image.Run, as
# `modelci run` does: the runtime layer, the small files in one gzip layer,
# each weights file uncompressed in a layer of its own; 7 layers totalling
# SIZE bytes (to within 511). Then four runs, each against a FRESH
# docker-registry (its own storage in the work directory, deleted after)
# behind the driver's proxy (`oci distribution`), which counts the request
# bodies clients send through it:
#   modelci          `oci copy`: registry.Copy of the layout's image by digest,
#                    with modelci's defaults (16 MiB chunks, 4 blobs at once,
#                    8 attempts per request, the conditional tag and its 1 s
#                    read-back on a registry that does not check conditions)
#   crane            `crane push LAYOUT HOST/REPO:TAG`
#   ... with faults  the same, the proxy answering a share FAULTS of all
#                    requests 503 (after reading their bodies, which count),
#                    drawn in order of arrival from an RNG seeded with SEED
# For each: wall time, bytes sent (request bodies through the proxy, those of
# failed requests included), the client's peak RSS (/usr/bin/time %M), and
# whether the registry then serves the image's digest under the tag. Prints
# a table and the modelci/crane ratios. A peer that fails is reported (its
# exit status and last error line), not fatal; the script fails when a
# modelci push does.
#
# Usage: [SIZE=2GiB] [FAULTS=0.3] [SEED=1] bench/push.sh
#   SIZE N, NKiB, NMiB or NGiB (default 2GiB; at least about 30MiB). The work
#   directory (TMPDIR) needs about 3×SIZE free. Run 2 GiB on a quiet machine:
#   the script prints the load average it started under.
# Needs: go (the driver, and crane built from the Go module proxy by
# tools/ko/build.sh crane into ~/.cache/modelci/crane-<key>/), Debian's
# docker-registry and time (/usr/bin/time).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
size="${SIZE:-2GiB}" faults="${FAULTS:-0.3}" seed="${SEED:-1}"
load="$(cut -d' ' -f1 /proc/loadavg)"

[[ -x /usr/bin/time ]] || { echo "bench/push: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
command -v docker-registry >/dev/null || { echo "bench/push: docker-registry missing (apt-get install -y docker-registry)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/modelci-bench-push.XXXXXX")"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building the bench driver and crane" >&2
go build -trimpath -o "$work/oci" ./bench/oci
oci="$work/oci"
crane="$("$root/tools/ko/build.sh" crane)"
runtime="$("$oci" runtime)"

echo "writing the model and building its image ($size)" >&2
built="$("$oci" model -dir "$work" -size "$size" -runtime "$runtime" -seed "$seed")"
# field JSON KEY prints a number or string field of a one-line JSON object.
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
ref="$(field "$built" ref)" digest="$(field "$built" digest)"
layout="$work/layout"
layer_bytes="$(field "$built" layer_bytes)" image_bytes="$(field "$built" image_bytes)"
layers="$(sed -n 's/.*"layers":\[\([^]]*\)\].*/\1/p' <<<"$built" | tr ',' ' ')"

declare -A secs rss sent reqs injected result how
# push NAME PEER FAULTS: one run against a fresh registry behind the proxy.
push() {
	local name="$1" peer="$2" share="$3" fifo="$work/$1.fifo" fd line addr="" registry="" pid rc got t kb
	mkfifo "$fifo"
	"$oci" distribution -root "$work/$name.registry" -log "$work/$name.registry.log" \
		-faults "$share" -seed "$seed" >"$work/$name.stats" 2>"$fifo" &
	pid=$!
	pids+=("$pid")
	exec {fd}<"$fifo"
	while IFS= read -r -u "$fd" line; do
		if [[ $line == *'"listening"'* ]]; then
			addr="$(field "$line" addr)" registry="$(field "$line" registry)"
			break
		fi
		echo "$line" >&2
	done
	[[ -n $addr ]] || { echo "bench/push: $name: the registry did not start" >&2; exit 1; }
	cat <&"$fd" >"$work/$name.driver.log" &
	pids+=($!)
	exec {fd}<&-

	local cmd
	case "$peer" in
	modelci) cmd=("$oci" copy -from "$ref" -to "$addr/bench/model:1.0.0") ;;
	crane) cmd=("$crane" push "$layout" "$addr/bench/model:1.0.0") ;;
	esac
	echo "$name: pushing to $addr (docker-registry $registry)" >&2
	rc=0
	/usr/bin/time -f '%e %M' -o "$work/$name.time" "${cmd[@]}" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
	read -r t kb < <(tail -n 1 "$work/$name.time")
	secs[$name]="$t" rss[$name]="$kb"
	# What the registry serves under the tag, asked directly (no faults).
	got="$("$crane" digest "$registry/bench/model:1.0.0" 2>/dev/null)" || got=""
	if ((rc == 0)) && [[ $got == "$digest" ]]; then
		result[$name]=ok
	elif ((rc == 0)); then
		result[$name]="exit 0, tag names ${got:-nothing}"
	else
		result[$name]="failed (exit $rc)"
		how[$name]="$(grep -v '^[[:space:]]*$' "$work/$name.err" | tail -n 1 | cut -c1-300)"
	fi
	kill -TERM "$pid"
	wait "$pid" || { echo "bench/push: $name: the driver failed:" >&2; cat "$work/$name.driver.log" >&2; exit 1; }
	local stats
	stats="$(cat "$work/$name.stats")"
	sent[$name]="$(field "$stats" sent_bytes)"
	reqs[$name]="$(field "$stats" requests)"
	injected[$name]="$(field "$stats" faults)"
	rm -rf "$work/$name.registry"
}

pct="$(awk -v f="$faults" 'BEGIN {printf "%g%%", f * 100}')"
push modelci modelci 0
push crane crane 0
push modelci-faults modelci "$faults"
push crane-faults crane "$faults"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
row() {
	printf '%-20s %-16s %7.2f %9.1f %10.4f %8d %8d %5d\n' "$1" "${result[$2]}" "${secs[$2]}" \
		"$(awk -v b="${sent[$2]}" 'BEGIN {print b / 1e6}')" "$(ratio "${sent[$2]}" "$image_bytes")" \
		$((${rss[$2]} / 1024)) "${reqs[$2]}" "${injected[$2]}"
}
cat <<REPORT

bench/push ($(go env GOVERSION), $(nproc) CPUs, load average $load at the start; crane $("$crane" version); docker-registry $(docker-registry --version | awk '{print $NF}'))
image: $(awk -v b="$layer_bytes" 'BEGIN {printf "%.1f MB", b / 1e6}') in 7 layers ($layers bytes), $image_bytes bytes with config and manifest
faults: $pct of requests answered 503 by the proxy after reading their bodies (seed $seed)

$(printf '%-20s %-16s %7s %9s %10s %8s %8s %5s' run result "time s" "sent MB" sent/image "RSS MiB" requests 503s)
$(row "modelci" modelci)
$(row "crane" crane)
$(row "modelci, $pct 503" modelci-faults)
$(row "crane, $pct 503" crane-faults)

modelci/crane, no faults:  time $(ratio "${secs[modelci]}" "${secs[crane]}"), bytes sent $(ratio "${sent[modelci]}" "${sent[crane]}"), peak RSS $(ratio "${rss[modelci]}" "${rss[crane]}")
modelci/crane, $pct 503:   time $(ratio "${secs[modelci-faults]}" "${secs[crane-faults]}"), bytes sent $(ratio "${sent[modelci-faults]}" "${sent[crane-faults]}"), peak RSS $(ratio "${rss[modelci-faults]}" "${rss[crane-faults]}")$([[ ${result[crane-faults]} == ok ]] || echo " (crane failed: its time and bytes are to its failure)")
REPORT
for name in modelci crane modelci-faults crane-faults; do
	[[ -z ${how[$name]:-} ]] || echo "$name: ${how[$name]}"
done
for name in modelci modelci-faults; do
	[[ ${result[$name]} == ok ]] || { echo "bench/push: modelci's push failed ($name)" >&2; exit 1; }
done
