#!/usr/bin/env bash
# One bounded libFuzzer run from a seed corpus, reported as a test:
# "test cases: 1 | 1 passed | 0 failed" when nothing crashed, and the input
# that crashed (under WORK_DIR/artifacts/) when something did.
# Usage: run_fuzzer.sh FUZZER WORK_DIR SECONDS SEED_DIR...   (missing seed dirs are skipped)
# DPGATE_FUZZ_SECONDS, when set, replaces SECONDS (longer runs from meson test).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 FUZZER WORK_DIR SECONDS SEED_DIR..." >&2
  exit 2
fi
fuzzer=$1 work=$2 seconds=${DPGATE_FUZZ_SECONDS:-$3}
shift 3
seeds=()
for d in "$@"; do
  [ -d "$d" ] && seeds+=("$d")
done
fuzzer=$(realpath "$fuzzer")
name=$(basename "$fuzzer")
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/last-run.log
# detect_leaks: libFuzzer checks every input for leaks; what DPDK's EAL keeps
# for the process's life is still referenced and not reported.
# lsan.supp: libconfig 1.5 leaks a scanner buffer on some syntax errors (once
# per failed load, at start-up; not dpgate's to fix).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
rc=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
corpus=$(find "$work/corpus" -type f | wc -l)
if [ "$rc" -eq 0 ]; then
  echo "fuzz $name: ${runs:-0} executions in ${seconds}s, $(find "${seeds[@]}" -type f | wc -l) seeds, $corpus new corpus inputs, no crash"
  echo "test cases: 1 | 1 passed | 0 failed"
  exit 0
fi
tail -60 "$log"
echo "fuzz $name: FAILED (exit $rc) after ${runs:-?} executions; reproduce with:"
for a in "$work"/artifacts/*; do
  [ -e "$a" ] && echo "  $fuzzer $a"
done
echo "test cases: 1 | 0 passed | 1 failed"
exit 1
