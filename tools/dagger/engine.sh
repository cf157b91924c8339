#!/usr/bin/env bash
# Starts and stops a Dagger engine (v0.19.10, built by build.sh) directly on
# this host, for modelci's Dagger tests and benchmarks. It needs root and
# nothing from a container registry:
#
#   tools/dagger/engine.sh start   # prints `export …` lines for clients
#   tools/dagger/engine.sh env     # the same lines for a running engine
#   tools/dagger/engine.sh stop
#
# start installs runc, the CNI plugins, dnsmasq, iptables and busybox from
# Debian when missing, puts runc, the init binary and the plugins where the
# engine looks for them (tools/dagger/distconsts), writes the Go SDK runtime
# image (tools/dagger/sdkimage) into the engine's content directory, starts
# the engine in a private mount namespace (its bind mount over
# /etc/resolv.conf stays there), waits for its socket and records its PID.
# Everything it writes outside the build cache lives under $MODELCI_DAGGER_STATE
# (default /run/modelci-dagger) and the engine's --root ($MODELCI_DAGGER_ROOT,
# default /var/lib/dagger), whose size MODELCI_DAGGER_MAX_CACHE caps. The
# engine's built-in content directory, a fixed path, is a link into the state
# directory, so a fresh state is a fresh engine (one engine per host: its
# bridge and ports are the host's).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${MODELCI_DAGGER_STATE:-/run/modelci-dagger}"
root="${MODELCI_DAGGER_ROOT:-/var/lib/dagger}"
sock="$state/engine.sock"
builtin=/usr/local/share/dagger/content # distconsts.EngineContainerBuiltinContentDir
content="$state/content"                 # what $builtin links to
cni=/opt/cni/bin

log() { echo "engine.sh: $*" >&2; }

need_root() {
	if [[ $(id -u) != 0 ]]; then
		log "must run as root (the engine creates a bridge, iptables chains and mounts)"
		exit 1
	fi
}

install_packages() {
	local missing=()
	for p in runc containernetworking-plugins dnsmasq-base iptables busybox-static; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	fi
}

# place BIN DST links DST to BIN unless it already is that file.
place() {
	mkdir -p "$(dirname "$2")"
	if [[ ! -e "$2" || "$(readlink -f "$2")" != "$(readlink -f "$1")" ]]; then
		ln -sf "$1" "$2"
	fi
}

install_binaries() {
	local bin="$1" plugins
	place "$(command -v runc)" /usr/local/bin/runc
	place "$bin/init" /usr/local/bin/dagger-init
	place "$bin/dnsname" "$cni/dnsname"
	plugins=/usr/lib/cni
	[[ -x $plugins/bridge ]] || plugins=/usr/libexec/cni
	for p in bridge loopback firewall host-local; do
		place "$plugins/$p" "$cni/$p"
	done
}

# sdk_image BIN prints the Go SDK image's manifest digest, building the
# image unless this state directory holds the same one (same toolchain,
# same go.sums, same codegen).
sdk_image() {
	local bin="$1" key marker
	key="$(
		{
			go version
			sha256sum "$repo/go.sum" "$repo/ci/go.sum" "$here/go.sum" "$bin/codegen" "$here/sdkimage/main.go"
		} | sha256sum | cut -c1-16
	)"
	marker="$content/modelci-sdk-$key"
	if [[ ! -s $marker ]]; then
		log "building the Go SDK runtime image (module cache seeded from this host)"
		local work
		work="$(mktemp -d)"
		# go mod download and go mod graph record the go.mod hashes they
		# read in go.sum: keep the committed go.sums as they are.
		cp "$repo/go.sum" "$work/root.go.sum"
		cp "$repo/ci/go.sum" "$work/ci.go.sum"
		local rc=0
		{
			# The Dagger module (ci/): its whole build list, which the SDK's
			# go mod tidy reads; modelci (the root): what its packages and
			# tests import, which the functions build and test.
			(cd "$repo/ci" && go mod download all && cd "$repo" && go mod download) >&2 &&
				(cd "$here" && go build -o "$work/sdkimage" ./sdkimage) &&
				# -graph: the go.mod files of the Go SDK's requirements (this
				# tools module requires the SDK), which the codegen's go mod
				# tidy reads.
				"$work/sdkimage" -layout "$content" -codegen "$bin/codegen" -busybox /bin/busybox \
					-module "$repo/ci" -build "$repo" -graph "$here" -work "$work" >"$work/digests"
		} || rc=$?
		cp "$work/root.go.sum" "$repo/go.sum"
		cp "$work/ci.go.sum" "$repo/ci/go.sum"
		((rc == 0)) || exit "$rc"
		mv "$work/digests" "$marker"
		rm -rf "$work"
	fi
	awk '$1 == "sdk" {print $2}' "$marker"
}

# link_content points the engine's fixed built-in content directory at this
# state's, unless another engine that is still running uses it.
link_content() {
	mkdir -p "$content" "$(dirname "$builtin")"
	if [[ -L $builtin ]]; then
		local other
		other="$(dirname "$(readlink "$builtin")")"
		if [[ $other != "$state" && -s $other/pid ]] && kill -0 "$(cat "$other/pid")" 2>/dev/null; then
			log "another engine (pid $(cat "$other/pid"), state $other) is running: stop it first (MODELCI_DAGGER_STATE=$other $0 stop)"
			exit 1
		fi
	elif [[ -e $builtin ]]; then
		# An older engine.sh kept its images there: keep them apart.
		mv "$builtin" "$builtin.old.$$"
	fi
	ln -sfn "$content" "$builtin"
}

env_lines() {
	local bin="$1"
	echo "export _EXPERIMENTAL_DAGGER_RUNNER_HOST=unix://$sock"
	echo "export _EXPERIMENTAL_DAGGER_CLI_BIN=$bin/dagger"
	echo "export MODELCI_DAGGER_ENGINE=unix://$sock"
	echo "export MODELCI_DAGGER_CLI=$bin/dagger"
	echo "export DAGGER_NO_NAG=1 DO_NOT_TRACK=1"
}

running() {
	[[ -s $state/pid ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null
}

start() {
	need_root
	local bin digest pid
	bin="$("$here/build.sh")"
	if running; then
		log "already running (pid $(cat "$state/pid"))"
		env_lines "$bin"
		return
	fi
	install_packages
	install_binaries "$bin"
	mkdir -p "$state" "$root"
	link_content
	digest="$(sdk_image "$bin")"
	rm -f "$sock"
	# The defaults, with our constants, are what we want; with
	# MODELCI_DAGGER_MAX_CACHE (e.g. 10GB) the engine's garbage collector
	# keeps its build cache under that size instead of a share of the disk.
	: >"$state/engine.toml"
	if [[ -n ${MODELCI_DAGGER_MAX_CACHE:-} ]]; then
		printf '[worker.oci]\n  maxUsedSpace = "%s"\n' "$MODELCI_DAGGER_MAX_CACHE" >"$state/engine.toml"
	fi
	local gpu=()
	if command -v nvidia-smi >/dev/null 2>&1; then
		gpu=(_EXPERIMENTAL_DAGGER_GPU_SUPPORT=1)
	fi
	log "starting the engine (log: $state/engine.log)"
	# unshare execs the engine, so $! is the engine's own PID.
	env DAGGER_GO_SDK_MANIFEST_DIGEST="$digest" _DAGGER_ENGINE_SYSTEMENV_GOPROXY=off "${gpu[@]}" \
		unshare --mount --propagation private \
		"$bin/engine" --config "$state/engine.toml" --addr "unix://$sock" --root "$root" \
		>"$state/engine.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$state/pid"
	# Poll for the socket; give up when the engine exits or after 60 s.
	for _ in $(seq 600); do
		[[ -S $sock ]] && break
		if ! kill -0 "$pid" 2>/dev/null; then
			log "the engine exited; last lines of its log:"
			tail -20 "$state/engine.log" >&2
			rm -f "$state/pid"
			exit 1
		fi
		sleep 0.1
	done
	if [[ ! -S $sock ]]; then
		log "no socket at $sock after 60 s; stopping it"
		stop
		exit 1
	fi
	env_lines "$bin" | tee "$state/env"
}

stop() {
	need_root
	if [[ ! -s $state/pid ]]; then
		log "not running"
		return
	fi
	local pid
	pid="$(cat "$state/pid")"
	# The engine's children (dnsmasq): noted now, ended by PID if it leaves them.
	local children
	children="$(pgrep -P "$pid" 2>/dev/null || true)"
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "engine $pid still running after 30 s; killing it"
			kill -KILL "$pid"
		fi
	fi
	for p in $children; do kill -TERM "$p" 2>/dev/null || true; done
	# The engine leaves its bridge behind; the next start makes a new one.
	if ip link show dagger0 >/dev/null 2>&1; then ip link delete dagger0 || true; fi
	rm -f "$state/pid" "$sock" "$state/env"
	log "stopped engine $pid"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env)
	running || { log "not running"; exit 1; }
	cat "$state/env"
	;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
