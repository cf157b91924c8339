#!/bin/sh
# Builds the test node's kubelet and its pod sandbox ("pause") binary, for internal/k8stest's
# real-node cluster, from the Go module proxy into a cache directory of its own, keyed on this
# module's go.sum, this script and the pause source, and prints that directory. It is apart from
# build.sh's directory so that the control plane's cache stays valid when only the node's build
# changes. Idempotent: when both binaries are there it only prints the directory. The pause
# binary is static (CGO_ENABLED=0): it is the whole of the sandbox image.
# Usage: MODELCI_K8S_NODE_BIN=$(tools/k8s/build-node.sh)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/go.sum" "$here/build-node.sh" "$here/cmd/pause/main.go" | sha256sum | cut -c1-12)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/k8s-node-$key"
bins="kubelet pause"
# The version go.mod requires, stamped into the binary: the kubelet reports it as the node's
# kubeletVersion, and the API server compares it with its own.
version=v1.37.2

complete() {
	for b in $bins; do
		[ -x "$1/$b" ] || return 1
	done
}

if complete "$dir"; then
	echo "$dir"
	exit 0
fi

# Build into a temporary sibling and rename it, so that an interrupted build never leaves a
# directory that looks complete.
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building the test node's kubelet into $dir (a cold build takes 5-10 minutes)" >&2
pkg=k8s.io/component-base/version
ldflags="-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean"
(
	cd "$here"
	GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" k8s.io/kubernetes/cmd/kubelet ./cmd/pause
)
complete "$tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
