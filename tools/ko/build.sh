#!/usr/bin/env bash
# Builds the ko CLI pinned by this module (tools/ko/go.mod) into a cache
# directory keyed by the hash of go.sum, unless it is already there, and
# prints the binary's path on stdout. bench/oci runs it as the peer of
# modelci's image build and push.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sum="$(sha256sum "$here/go.sum" | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/ko-$sum"
bin="$dir/ko"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	tmp="$(mktemp "$dir/ko.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	version="$(cd "$here" && go list -m -f '{{.Version}}' github.com/google/ko)"
	echo "building ko $version into $dir (a cold build takes minutes)" >&2
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X github.com/google/ko/pkg/commands.Version=$version" \
		-o "$tmp" github.com/google/ko)
	# Rename last so that a concurrent or interrupted build never leaves a
	# half-written binary at the cached path.
	mv -f "$tmp" "$bin"
	trap - EXIT
fi
echo "$bin"
