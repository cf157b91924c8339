#!/usr/bin/env bash
# Builds a CLI pinned by this module (tools/ko/go.mod) into a cache
# directory keyed by the hash of go.sum, unless it is already there, and
# prints the binary's path on stdout:
#   tools/ko/build.sh [ko]   ko (bench/oci's peer of modelci's image build
#                            and push), into .../modelci/ko-<key>/ko
#   tools/ko/build.sh crane  crane, at the go-containerregistry version ko
#                            requires (bench/push.sh's peer of modelci's
#                            push), into .../modelci/crane-<key>/crane
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tool="${1:-ko}"
case "$tool" in
ko)
	mod=github.com/google/ko
	pkg=github.com/google/ko
	ldflags_version="-X github.com/google/ko/pkg/commands.Version="
	;;
crane)
	mod=github.com/google/go-containerregistry
	pkg=github.com/google/go-containerregistry/cmd/crane
	ldflags_version="-X github.com/google/go-containerregistry/cmd/crane/cmd.Version="
	;;
*)
	echo "usage: tools/ko/build.sh [ko|crane]" >&2
	exit 2
	;;
esac
sum="$(sha256sum "$here/go.sum" | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/modelci/$tool-$sum"
bin="$dir/$tool"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	tmp="$(mktemp "$dir/$tool.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	version="$(cd "$here" && go list -m -f '{{.Version}}' "$mod")"
	echo "building $tool $version into $dir (a cold build takes minutes)" >&2
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w $ldflags_version$version" -o "$tmp" "$pkg")
	# Rename last so that a concurrent or interrupted build never leaves a
	# half-written binary at the cached path.
	mv -f "$tmp" "$bin"
	trap - EXIT
fi
echo "$bin"
