#!/usr/bin/env bash
# The unit and pipeline tests built with AddressSanitizer + UndefinedBehavior-
# Sanitizer (g++, the project's compiler) in build-asan/, and run.
# Usage: scripts/sanitize.sh [meson test args...]   (default: --suite unit --suite pipeline)
# Ends with "sanitize: N passed, N failed" (scripts/test-summary.py's count).
#
# DPDK under ASan: Debian's DPDK is not instrumented, and with --no-huge its
# memory (mempools, rings, rte_malloc) is one anonymous mapping ASan does not
# track, so overruns inside an mbuf are not seen here (the pipeline fuzzer
# poisons mbuf tailroom by hand for that). The EAL frees what it allocates in
# rte_eal_cleanup() and what it keeps is still referenced at exit, so leak
# checking stays on; test/fuzz/lsan.supp covers libconfig's one known leak.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '4,5s/^# \{0,1\}//p' "$0"
  exit 0
fi

# -Wno-maybe-uninitialized: with -fsanitize=address, g++ 12 reports false
# "may be used uninitialized" inside libstdc++'s <regex> (Catch2's header
# pulls it in); GCC's manual warns that ASan makes this warning unreliable.
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -De2e=false \
    -Dcpp_args=-Wno-maybe-uninitialized >/dev/null
fi
[ $# -gt 0 ] || set -- --suite unit --suite pipeline
ninja -C build-asan build.ninja >/dev/null  # re-reads meson.build files that changed
# Build only the executables of the tests that will run (not the daemon, perf, oracle...).
suites=$(printf '%s\n' "$@" | awk 'prev == "--suite" {print} {prev = $0}')
targets=$(meson introspect build-asan --tests | python3 -c '
import json, os, sys
suites, build = set(sys.argv[1].split()), os.path.abspath("build-asan")
for t in json.load(sys.stdin):
    exe = os.path.abspath(t["cmd"][0])
    if exe.startswith(build + "/") and (not suites or suites & {s.split(":")[-1] for s in t["suite"]}):
        print(os.path.relpath(exe, build))' "$suites" | sort -u)
# shellcheck disable=SC2086
ninja -C build-asan -j2 $targets

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/test/fuzz/lsan.supp:print_suppressions=0}
status=0
meson test -C build-asan --no-rebuild --print-errorlogs --num-processes 2 "$@" || status=$?
if [ -f build-asan/meson-logs/testlog.json ]; then
  echo "sanitize: $(python3 scripts/test-summary.py build-asan/meson-logs/testlog.json)"
else
  echo "sanitize: 0 passed, 1 failed (no test ran)"
  status=1
fi
exit $status
