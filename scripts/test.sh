#!/usr/bin/env bash
# Runs every dpgate test: deps -> configure -> build into build/ -> unit, pipeline, e2e.
# Usage: scripts/test.sh [meson test args...]
# Ends with one line "N passed, N failed[, N skipped]" summing every test run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
ninja -C build

status=0
meson test -C build --print-errorlogs --num-processes 2 "$@" || status=$?

python3 scripts/test-summary.py build/meson-logs/testlog.json
exit $status
