#!/usr/bin/env bash
# Runs every dpgate test: deps -> configure -> build into build/ -> unit,
# pipeline, e2e, oracle, differential and perf-smoke suites; then the unit and
# pipeline tests again under ASan+UBSan (scripts/sanitize.sh, build-asan/) and
# each libFuzzer target for a bounded time (scripts/fuzz.sh, build-fuzz/).
# Usage: scripts/test.sh [meson test args...]
#   With arguments, only `meson test` in build/ runs, with those arguments.
#   DPGATE_SANITIZE=0 / DPGATE_FUZZ=0 skip the sanitizer or fuzzing stage;
#   DPGATE_FUZZ_SECONDS sets each fuzzer's time (default 30).
# Ends with one line "N passed, N failed[, N skipped]" summing every test run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
ninja -C build

status=0
logs=(build/meson-logs/testlog.json)
rm -f "${logs[@]}"
meson test -C build --print-errorlogs --num-processes 2 "$@" || status=$?

if [ $# -eq 0 ] && [ "${DPGATE_SANITIZE:-1}" != 0 ]; then
  rm -f build-asan/meson-logs/testlog.json
  logs+=(build-asan/meson-logs/testlog.json)
  bash scripts/sanitize.sh || status=1
fi
if [ $# -eq 0 ] && [ "${DPGATE_FUZZ:-1}" != 0 ]; then
  rm -f build-fuzz/meson-logs/testlog.json
  logs+=(build-fuzz/meson-logs/testlog.json)
  bash scripts/fuzz.sh --time "${DPGATE_FUZZ_SECONDS:-30}" || status=1
fi

python3 scripts/test-summary.py "${logs[@]}"
exit $status
