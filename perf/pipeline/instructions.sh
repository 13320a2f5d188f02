#!/usr/bin/env bash
# Instructions a packet in the worker, counted by callgrind: pipeline_bench
# under valgrind twice, with N and 2N timed packets, and the difference of
# the two counts over N, so that setup, the flows' first packets and warm-up
# drop out. Two figures: worker_poll() (what pipeline_bench times: ring
# receive, the pipeline, TX to net_null) and worker_process_burst() (the
# pipeline alone). Cycles on this VM move with the host by 10-30 %; the
# instruction count of a build does not move at all, so an A/B of two builds
# is one run each. It is no timing: a change that trades instructions for
# memory stalls shows here as it is not; confirm with pipeline_bench.
# Usage: perf/pipeline/instructions.sh [--build DIR] [--packets N] MODE [pipeline_bench options]
#   MODE  l3 | established | new (pipeline_bench --mode), e.g.
#         instructions.sh established --flows 1024 --services 100 --rules s100.rules
# Needs valgrind (apt-get install valgrind); ~1 minute. Prints one JSON line.
set -euo pipefail
perf=$(cd "$(dirname "$0")/.." && pwd)
build=$(dirname "$perf")/build-perf packets=100000
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --packets) packets=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n '11,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
mode=$1; shift
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bench=$build/perf/pipeline/pipeline_bench
[ -x "$bench" ] || { echo "instructions.sh: no $bench (ninja -C $build perf/pipeline/pipeline_bench)" >&2; exit 1; }
work=$(mktemp -d /tmp/dpg-callgrind.XXXXXX)
trap 'rm -rf "$work"' EXIT

# count N: worker_poll's and worker_process_burst's inclusive instructions
# over a run with N timed packets, as "POLL BURST".
count() {
  local n=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" "$bench" --mode "$mode" --repeats 1 \
    --packets "$n" "$@" >"$work/log.$n" 2>&1 || { cat "$work/log.$n" >&2; exit 1; }
  callgrind_annotate --inclusive=yes "$work/cg.$n" 2>/dev/null | awk '
    /dataplane::worker_poll\(/ && !p { gsub(",", "", $1); p = $1 }
    /dataplane::worker_process_burst\(/ && !b { gsub(",", "", $1); b = $1 }
    END { if (!p || !b) exit 1; print p, b }'
}
read -r p1 b1 < <(count "$packets" "$@")
read -r p2 b2 < <(count $((2 * packets)) "$@")
python3 -c "
import json
n = $packets
print(json.dumps({'mode': '$mode', 'packets': n,
                  'poll_instructions_per_packet': round(($p2 - $p1) / n, 1),
                  'pipeline_instructions_per_packet': round(($b2 - $b1) / n, 1)}))"
