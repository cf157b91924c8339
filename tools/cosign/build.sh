#!/usr/bin/env bash
# Builds the cosign CLI pinned by this module (tools/cosign/go.mod) into a
# cache directory keyed by the hash of go.sum, unless it is already there,
# and prints the binary's path on stdout. The compatibility tests in
# stages/sign run it when MODELCI_COSIGN_CLI names it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sum="$(sha256sum "$here/go.sum" | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/cosign-$sum"
bin="$dir/cosign"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	tmp="$(mktemp "$dir/cosign.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	version="$(cd "$here" && go list -m -f '{{.Version}}' github.com/sigstore/cosign/v2)"
	echo "building cosign $version into $dir (a cold build takes minutes)" >&2
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$version" \
		-o "$tmp" github.com/sigstore/cosign/v2/cmd/cosign)
	# Rename last so that a concurrent or interrupted build never leaves a
	# half-written binary at the cached path.
	mv -f "$tmp" "$bin"
	trap - EXIT
fi
echo "$bin"
