#!/usr/bin/env bash
# Builds the Dagger CLI, engine, init, dnsname and codegen pinned by this
# module (tools/dagger/go.mod, engine v0.19.10) into a cache directory keyed
# by the hash of go.sum, unless they are already there, and prints that
# directory on stdout. A cold build takes about ten minutes on two cores;
# a cached one returns at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sum="$(sha256sum "$here/go.sum" | cut -c1-12)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/dagger-$sum"
cmds=(dagger engine init dnsname codegen)

done=1
for c in "${cmds[@]}"; do
	[[ -x "$dir/$c" ]] || done=0
done
if [[ $done == 0 ]]; then
	mkdir -p "$dir"
	tmp="$(mktemp -d "$dir/build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	version="$(cd "$here" && go list -m -f '{{.Version}}' github.com/dagger/dagger)"
	echo "building dagger $version into $dir (a cold build takes about ten minutes)" >&2
	pkgs=()
	for c in "${cmds[@]}"; do pkgs+=("github.com/dagger/dagger/cmd/$c"); done
	# The checksum database has no entries for these modules; go.sum, kept
	# in this directory, is what verifies them.
	(cd "$here" && GONOSUMDB=github.com/dagger/dagger,github.com/vito/bubbline,github.com/jedevc/go-libsecret \
		CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X github.com/dagger/dagger/engine.Version=$version -X github.com/dagger/dagger/engine.Tag=$version" \
		-o "$tmp/" "${pkgs[@]}")
	# Rename last so that a concurrent or interrupted build never leaves a
	# half-written binary at a cached path.
	for c in "${cmds[@]}"; do mv -f "$tmp/$c" "$dir/$c"; done
	rm -rf "$tmp"
	trap - EXIT
fi
echo "$dir"
