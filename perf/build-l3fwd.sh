#!/usr/bin/env bash
# Builds DPDK's l3fwd example (Debian's dpdk-doc) with perf/l3fwd.patch applied,
# into BUILD_DIR/l3fwd/build/l3fwd. l3fwd's code is copied at build time and
# never committed. Rebuilds only when the patch or the sources change.
# Usage: perf/build-l3fwd.sh BUILD_DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
src=/usr/share/dpdk/examples
patch_file=$(cd "$(dirname "$0")" && pwd)/l3fwd.patch
dir=$(mkdir -p "$1" && cd "$1" && pwd)/l3fwd
[ -d "$src/l3fwd" ] || { echo "build-l3fwd: $src/l3fwd missing: apt-get install dpdk-doc" >&2; exit 1; }
stamp=$(cat "$patch_file" "$src"/l3fwd/*.c "$src"/l3fwd/*.h | sha256sum | cut -c1-16)
if [ -x "$dir/build/l3fwd" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$dir/build/l3fwd"
  exit 0
fi
tmp=$(mktemp -d "$1/l3fwd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
cp -r "$src/l3fwd" "$src/common" "$tmp/"
(cd "$tmp" && patch -s -p0 <"$patch_file")
make -s -C "$tmp/l3fwd" >"$tmp/make.log" 2>&1 \
  || { cat "$tmp/make.log" >&2; exit 1; }
rm -rf "$dir"
mv "$tmp/l3fwd" "$dir"
echo "$stamp" >"$dir/.stamp"
echo "$dir/build/l3fwd"
