#!/usr/bin/env bash
# Smoke run of dpgate-gen against dpgate (a few seconds; asserts nothing about
# speed): dpgate with kube-proxy rules for 10 services serves two net_memif
# ports, dpgate-gen sends a low-rate TCP mix (new flows and established ones)
# for 2 s, then, against a fresh dpgate, runs a short zero-loss search; checks
# that frames came back DNATed, that the latency figures are there, and that
# nothing is left behind.
# Usage: perf/gen/smoke.sh DPGATE_BINARY DPGATE_GEN_BINARY
# Prints "test cases: N | N passed | N failed" (scripts/test-summary.py counts it).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DPGATE_BINARY DPGATE_GEN_BINARY" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "perf gen smoke: needs root; skipped"; exit 77; }
perf=$(cd "$(dirname "$0")/.." && pwd)
dpgate=$1 gen=$2
work=$(mktemp -d /tmp/dpggen.XXXXXX)
tag=dpggen$$
dp_pid= gen_pid=
stop_rc=0
stop() {  # stop PID: SIGINT, SIGKILL after 5 s; its exit status in stop_rc
  stop_rc=0
  [ -n "$1" ] || return 0
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || stop_rc=$?
}
cleanup() {
  stop "$gen_pid"
  stop "$dp_pid"
  rm -rf "$work" /var/run/dpdk/"$tag"-*
}
trap cleanup EXIT INT TERM
passed=0 failed=0
check() {
  local what=$1
  shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $what"; else failed=$((failed + 1)); echo "FAILED: $what"; fi
}

python3 "$perf/gen-rules.py" "$work/svc.rules" --services 10 --endpoints 4
memif() { echo "net_memif$1,role=$2,socket=$work/$3.sock,socket-abstract=no,mac=$4"; }
cat >"$work/dpgate.conf" <<CONF
workers = 1;
idle_sleep_us = 0;
mbuf_pool_size = 8191;
ports = (
  { name = "lan"; device = "$(memif 0 server lan 02:00:00:00:00:01)"; addresses = [ "198.18.0.1/24" ]; },
  { name = "wan"; device = "$(memif 1 server wan 02:00:00:00:01:01)"; addresses = [ "198.18.101.1/24" ]; }
);
routes = ( { prefix = "198.18.1.0/24"; gateway = "198.18.101.2"; port = "wan"; } );
neighbours = ( { address = "198.18.101.2"; mac = "02:00:00:00:01:02"; port = "wan"; } );
conntrack = { max_flows = 65536; };
control = { socket = "$work/dpgate.sock"; metrics = ""; };
rules = "$work/svc.rules";
CONF
log=(--log-level=lib.eal:warning --log-level=pmd.net.memif:warning)

# session NAME ARGS...: starts dpgate, runs dpgate-gen --hold with ARGS until
# its last line is out, stops dpgate, then the generator (it leaves when the
# link goes down: a memif client leaving under a polling server can crash it).
# Writes NAME.out (generator stdout), NAME.err, NAME.dpgate.log.
session() {
  local name=$1
  shift
  rm -f "$work"/*.sock
  "$dpgate" --no-huge --no-pci -m 512 --file-prefix "$tag-dut" "${log[@]}" --lcores 0@0,1@1 \
    -- -c "$work/dpgate.conf" >"$work/$name.dpgate.log" 2>&1 &
  dp_pid=$!
  for _ in $(seq 1 300); do
    grep -q "dpgate: running" "$work/$name.dpgate.log" && break
    kill -0 "$dp_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "dpgate: running" "$work/$name.dpgate.log" || { cat "$work/$name.dpgate.log"; return 1; }
  "$gen" --no-huge --no-pci -m 256 --file-prefix "$tag-gen" "${log[@]}" --lcores 0@0 \
    --vdev "$(memif 0 client lan 02:00:00:00:00:02)" --vdev "$(memif 1 client wan 02:00:00:00:01:02)" \
    -- --proto tcp --services 10 --hold "$@" >"$work/$name.out" 2>"$work/$name.err" &
  gen_pid=$!
  for _ in $(seq 1 600); do
    grep -q '"kind":"\(result\|search\)"' "$work/$name.out" && break
    kill -0 "$gen_pid" 2>/dev/null || break
    sleep 0.1
  done
  stop "$dp_pid"
  dp_pid=
  echo "$stop_rc" >"$work/$name.dpgate.rc"
  local rc=0
  for _ in $(seq 1 50); do kill -0 "$gen_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$gen_pid" 2>/dev/null && stop "$gen_pid"
  wait "$gen_pid" || rc=$?
  gen_pid=
  rm -rf /var/run/dpdk/"$tag"-*
  cat "$work/$name.out" "$work/$name.err"
  return "$rc"
}
result() {  # result NAME PYTHON-EXPRESSION over r (the last JSON line of NAME.out)
  python3 -c "
import json, sys
r = json.loads(open('$work/$1.out').read().strip().splitlines()[-1])
sys.exit(0 if ($2) else 1)" 2>/dev/null
}

check "dpgate-gen runs 2 s at 5000 pps against dpgate and exits when dpgate stops" \
  session run --flows 256 --new-ratio 0.25 --rate 5000 --duration 2 --progress
check "dpgate started with two memif server ports" grep -q "dpgate: running" "$work/run.dpgate.log"
# A generator preempted for long on a busy machine skips frames (and counts them).
check "it offered the 10000 frames due, or counted the ones it skipped, and most came back" \
  result run "r['kind'] == 'result' and r['offered'] + r['skipped'] == 10000 and r['received'] >= r['offered'] / 2 > 0"
check "frames came back DNATed to the service endpoints" result run "r['translated'] == r['received'] > 0"
check "a quarter of the frames opened new flows" result run "abs(r['new_flows'] - r['offered'] / 4) <= 1"
check "latency min/avg/p50/p99/max are present and ordered" \
  result run "(lambda l: 0 < l['min'] <= l['p50'] <= l['p99'] <= l['max'] and l['min'] <= l['avg'] <= l['max'] and l['samples'] == r['received'])(r['latency_us'])"
check "per-second lines were printed" grep -q '"kind":"second"' "$work/run.out"
check "dpgate counted the DNAT flows" grep -q "conntrack: flows [1-9]" "$work/run.dpgate.log"
check "dpgate stopped cleanly on SIGINT" grep -qx 0 "$work/run.dpgate.rc"

check "the zero-loss search runs its trials and reports" \
  session search --new-ratio 1 --search --search-max 5000 --max-trials 3 --duration 0.5 --pause-ms 50
search_ok() {
  result search "r['kind'] == 'search' and 1 <= r['trials'] <= 3 and 'zero_loss_pps' in r" &&
    grep -q '"kind":"trial"' "$work/search.out"
}
check "the search line has the rate and the trial count, after a line per trial" search_ok

bad_option() {
  local out
  if out=$("$gen" --no-huge --no-pci -m 64 --file-prefix "$tag-bad" "${log[@]}" --vdev net_null0 -- --proto sctp 2>&1); then
    return 1
  fi
  grep -q "expected tcp or udp" <<<"$out"
}
check "dpgate-gen rejects a bad option with a message" bad_option
rm -rf /var/run/dpdk/"$tag"-*
check "no DPDK runtime directory of the run is left" bash -c "! ls -d /var/run/dpdk/$tag-* 2>/dev/null | grep -q ."
echo "test cases: $((passed + failed)) | $passed passed | $failed failed"
[ "$failed" -eq 0 ]
