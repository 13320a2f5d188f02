#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ (ASan + UBSan, libraries
# instrumented for coverage) in build-fuzz/ and runs each for a bounded time.
# Usage: scripts/fuzz.sh [--seeds] [--time SECONDS] [FUZZER...]
#   FUZZER        packet_parse_fuzz pipeline_fuzz config_fuzz rules_fuzz control_fuzz
#                 (default: all)
#   --time N      seconds per fuzzer (default 45; the meson tests' bound)
#   --seeds       rewrite the generated seeds first (packet, pipeline: make_seeds;
#                 rules: rules_seeds.py from ../shared/fixtures and the oracle corpus)
# Ends with "N passed, N failed" like scripts/test.sh. Found crashes are under
# build-fuzz/test/fuzz/work/<corpus>/artifacts/.
# Longer runs: --time 3600 (an hour per fuzzer), e.g. scripts/fuzz.sh --time 3600
# control_fuzz. What a run finds is kept in build-fuzz/test/fuzz/work/<corpus>/corpus/
# and the next run starts from it, so runs add up. A crash reproduces alone with
# build-fuzz/test/fuzz/FUZZER ARTIFACT (seeds are in test/fuzz/corpus/<corpus>/).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '4,15s/^# \{0,1\}//p' "$0"; exit 2; }
seconds=
seeds=0
fuzzers=()
while [ $# -gt 0 ]; do
  case $1 in
    --time) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --seeds) seeds=1; shift ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) fuzzers+=("$1"); shift ;;
  esac
done
all=(packet_parse_fuzz pipeline_fuzz config_fuzz rules_fuzz control_fuzz)
[ ${#fuzzers[@]} -gt 0 ] || fuzzers=("${all[@]}")

if [ ! -f build-fuzz/build.ninja ]; then
  # -fsanitize=fuzzer-no-link instruments dpgate's libraries for coverage; the
  # fuzz targets themselves link libFuzzer (test/fuzz/meson.build).
  CC=clang CXX=clang++ meson setup build-fuzz -Dfuzz=true -De2e=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=-fsanitize=fuzzer-no-link >/dev/null
fi
targets=()
for f in "${fuzzers[@]}"; do targets+=("test/fuzz/$f"); done
[ "$seeds" -eq 0 ] || targets+=(test/fuzz/make_seeds)
ninja -C build-fuzz -j2 "${targets[@]}"
if [ "$seeds" -eq 1 ]; then
  build-fuzz/test/fuzz/make_seeds test/fuzz/corpus
  python3 test/fuzz/rules_seeds.py ../shared/fixtures test/oracle/corpus test/fuzz/corpus/rules
fi

export DPGATE_FUZZ_SECONDS=${seconds:-${DPGATE_FUZZ_SECONDS:-45}}
status=0
# --timeout-multiplier 0: no meson timeout; each run bounds itself.
meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs --num-processes 2 \
  --timeout-multiplier 0 "${fuzzers[@]}" || status=$?
python3 scripts/test-summary.py build-fuzz/meson-logs/testlog.json
exit $status
