#!/usr/bin/env bash
# Benchmarks first-packet rule evaluation (interpreter vs compiled Program)
# and compile time on kube-proxy-shaped rulesets of 10..10000 services.
# Usage: perf/rules/run.sh BUILD_DIR [OUT.json]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [OUT.json]" >&2
  exit 2
fi
build=$1
out=${2:-/dev/stdout}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=()
for n in 10 100 1000 10000; do
  python3 "$here/../../scripts/kube-rules.py" "$n" 3 > "$tmp/kube-$n.rules"
  files+=("$tmp/kube-$n.rules")
done
"$build/perf/rules/rules_bench" "${files[@]}" > "$out"
