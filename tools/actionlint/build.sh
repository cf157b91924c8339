#!/usr/bin/env bash
# Builds the actionlint CLI pinned by this module (tools/actionlint/go.mod)
# into a cache directory keyed by the hash of go.sum, unless it is already
# there, and prints the binary's path on stdout. The workflow test in
# ghactions runs it when MODELCI_ACTIONLINT names it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sum="$(sha256sum "$here/go.sum" | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/actionlint-$sum"
bin="$dir/actionlint"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	tmp="$(mktemp "$dir/actionlint.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	version="$(cd "$here" && go list -m -f '{{.Version}}' github.com/rhysd/actionlint)"
	echo "building actionlint $version into $dir" >&2
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X github.com/rhysd/actionlint.version=$version" \
		-o "$tmp" github.com/rhysd/actionlint/cmd/actionlint)
	# Rename last so that a concurrent or interrupted build never leaves a
	# half-written binary at the cached path.
	mv -f "$tmp" "$bin"
	trap - EXIT
fi
echo "$bin"
