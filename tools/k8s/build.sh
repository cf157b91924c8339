#!/bin/sh
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) from the Go module proxy into a cache directory keyed on this module's go.sum, and
# prints that directory. Idempotent: when every binary is already there it only prints the directory.
# Usage: MODELCI_K8S_BIN=$(tools/k8s/build.sh)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
key=$(sha256sum "$here/go.sum" | cut -c1-12)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/k8s-$key"
bins="etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok"

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
echo "building the test control plane into $dir (a cold build takes 10-20 minutes)" >&2
(
	cd "$here"
	GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -o "$tmp/" tool ./cmd/etcd
)
complete "$tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
