#!/usr/bin/env bash
# Smoke run of the performance harness (seconds; asserts nothing about speed):
# perf/run.sh --quick with every peer, and one new-connection row (dpgate fed
# by dpgate-gen over memif), then checks that each moved packets,
# that the report redraws from its JSON, and that nothing was left behind.
# Usage: perf/smoke.sh DPGATE_BINARY BUILD_DIR
# Prints "test cases: N | N passed | N failed" (scripts/test-summary.py counts it).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DPGATE_BINARY BUILD_DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "perf smoke: needs root; skipped"; exit 77; }
perf=$(cd "$(dirname "$0")" && pwd)
dpgate=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
build=$2
work=$(mktemp -d /tmp/dpgsmoke.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
passed=0 failed=0
check() {
  local what=$1
  shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $what"; else failed=$((failed + 1)); echo "FAILED: $what"; fi
}

before=$(ls -d /var/run/dpdk/dpgperf* 2>/dev/null | sort || true)
run() { "$perf/run.sh" --quick --no-plots --dpgate "$dpgate" --build "$build" --out "$work/results" >"$work/run.log" 2>&1; }
check "perf/run.sh --quick finishes and writes one result" run
cat "$work/run.log"
result=$(ls "$work"/results/run-*.json 2>/dev/null | head -1)
moved() {
  python3 - "$result" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sc = r["scenarios"]["l3-64"]
sample = sc["samples"][sys.argv[2]]["1"]
if sample and sample["pkts_out"] > 0 and sample["cycles_per_pkt"] > 0:
    sys.exit(0)
print(f"  {sys.argv[2]}'s sample: {sample}")
sys.exit(1)
PY
}
for peer in testpmd l3fwd dpgate; do
  check "$peer forwarded packets from net_pcap to net_null and was measured" moved "$peer"
done
# In and out are read one after the other at each end of the window, so a
# preempted reader skews them by what moved in between (the CI runner has 2
# cores for everything): 95% says "forwards", not "how fast".
check "dpgate forwarded at least 95% of what it received in the window" python3 -c "
import json, sys
s = json.load(open('$result'))['scenarios']['l3-64']['samples']['dpgate']['1']
ok = s['pkts_out'] >= 0.95 * s['pkts_in']
ok or print('  dpgate in', s['pkts_in'], 'out', s['pkts_out'])
sys.exit(0 if ok else 1)"
check "the ratios to testpmd and l3fwd are in the result" \
  python3 -c "import json; r = json.load(open('$result'))['scenarios']['l3-64']['dpgate_over']; assert {'testpmd', 'l3fwd'} <= set(r)"
check "report.py redraws the table from the JSON" bash -c "python3 '$perf/report.py' --redraw '$result' | grep 'dpgate/l3fwd' >/dev/null"
# A new-connection row: dpgate fed by dpgate-gen over memif, the kernel by
# the row's pcap; dpgate (not the generator) must have set the rate.
newconn() {
  "$perf/run.sh" --scenario svc-new-10 --repeats 1 --warmup 0.3 --window 0.5 --no-plots \
    --dpgate "$dpgate" --build "$build" --out "$work/new" >"$work/new.log" 2>&1
}
check "perf/run.sh measures new connections (svc-new-10)" newconn
cat "$work/new.log"
check "dpgate made connections from dpgate-gen's SYNs, and its ring pushed the generator back" python3 -c "
import glob, json, sys
r = json.load(open(glob.glob('$work/new/run-*.json')[0]))
s = r['scenarios']['svc-new-10']['samples']['dpgate']['1']
ok = s and s['pkts_out'] > 0 and s['gen_pushback'] >= 0.01 and 'kernel' in r['scenarios']['svc-new-10']['dpgate_over']
ok or print('  dpgate sample', s)
sys.exit(0 if ok else 1)"
# Only this run's directories count: another harness run may be going on.
left=$(comm -13 <(printf '%s\n' "$before") <(ls -d /var/run/dpdk/dpgperf* 2>/dev/null | sort))
check "no DPDK runtime directory of the run is left" test -z "$left"
[ -z "$left" ] || echo "  left: $left"
echo "test cases: $((passed + failed)) | $passed passed | $failed failed"
[ "$failed" -eq 0 ]
