#!/usr/bin/env bash
# Runs match_bench at 64, 512 and 1400-byte payloads REPEATS times, in turn,
# and keeps each figure's minimum: on a shared machine the least disturbed
# run is the closest to the cost itself.
# Usage: perf/match/run.sh BUILD_DIR [REPEATS] [OUT.jsonl] [TO]
# (TO: every string match gets --to TO; see match_bench.cpp)
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [REPEATS] [OUT.jsonl]" >&2
  exit 2
fi
bench=$1/perf/match/match_bench
repeats=${2:-5}
out=${3:-/dev/stdout}
to=${4:-0}
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for _ in $(seq "$repeats"); do
  for bytes in 64 512 1400; do
    "$bench" "$bytes" "$to" >> "$runs"
  done
done
python3 - "$runs" > "$out" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["to"], r["payload_bytes"], r["patterns"])
    best[key] = {k: min(v, best.get(key, r)[k]) for k, v in r.items()}
for key in sorted(best):
    print(json.dumps(best[key]))
PY
