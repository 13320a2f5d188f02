#!/usr/bin/env bash
# RFC 2544 zero-loss throughput of dpgate, measured by dpgate-gen in another
# process over two net_memif ports (dpgate serves them, the generator is the
# client): for each --services value, start dpgate with kube-proxy rules for
# that many services (perf/gen-rules.py; none for 0), let dpgate-gen search
# for the highest rate with no loss, stop dpgate. Prints a JSON line per
# search and a table; --new-conn measures the new-connection rate (every
# packet the SYN of a flow never seen, DNATed by the KUBE-SVC chains).
# Usage: perf/zero-loss.sh [--services N[,N...]] [--new-conn] [--repeats R] [--proto tcp|udp]
#          [--size BYTES] [--flows F] [--endpoints K] [--trial SEC] [--max-time SEC]
#          [--loss RATIO] [--retries N] [--max-flows N] [--ring LOG2] [--syn-timeout SEC]
#          [--nice N] [--gen-arg ARG]... [--json FILE]
#          [--build DIR] [--dpgate BIN] [--gen BIN]
#   --services   comma list; 0 = plain routing, no rules (default 0). Repeats interleave them.
#   --new-conn   every packet a new TCP flow (a SYN); else --flows established flows (ACKs, or UDP)
#   --trial      seconds per trial (default 3); --max-time bounds one search (default 60)
#   --ring       memif ring size, log2 (default 14: 16384 slots, the most memif has)
#   --syn-timeout  dpgate's conntrack tcp_syn_sent timeout with --new-conn (default 1 s): the
#                generator never answers a SYN, and netfilter's 120 s would fill the table
#                within seconds, after which every new flow also pays an early drop
#   --nice       run dpgate and dpgate-gen in sessions of their own at this nice level (e.g. -10
#                on a machine busy with builds: a preempted poller loses packets; the table
#                shows how much the worker still waited)
#   --build      meson build dir to build dpgate and dpgate-gen in (default build-perf)
set -euo pipefail
usage() { sed -n '9,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
perf=$(cd "$(dirname "$0")" && pwd)
. "$perf/memif.sh"
root=$(dirname "$perf")
build=$root/build-perf
services=0 new_conn=0 repeats=1 proto= size=64 flows=1024 endpoints=4 trial=3 max_time=60
loss=0 retries=1 max_flows=2097152 ring=14 syn_timeout=1 nice=0 json= dpgate= gen=
gen_extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --services) services=$2; shift ;;
    --new-conn) new_conn=1 ;;
    --repeats) repeats=$2; shift ;;
    --proto) proto=$2; shift ;;
    --size) size=$2; shift ;;
    --flows) flows=$2; shift ;;
    --endpoints) endpoints=$2; shift ;;
    --trial) trial=$2; shift ;;
    --max-time) max_time=$2; shift ;;
    --loss) loss=$2; shift ;;
    --retries) retries=$2; shift ;;
    --max-flows) max_flows=$2; shift ;;
    --ring) ring=$2; shift ;;
    --syn-timeout) syn_timeout=$2; shift ;;
    --nice) nice=$2; shift ;;
    --gen-arg) gen_extra+=("$2"); shift ;;
    --json) json=$2; shift ;;
    --build) build=$2; shift ;;
    --dpgate) dpgate=$2; shift ;;
    --gen) gen=$2; shift ;;
    *) usage ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "zero-loss.sh: needs root (DPDK runtime dir)" >&2; exit 1; }
[ -n "$proto" ] || { if [ "$new_conn" -eq 1 ] || [ "$services" != 0 ]; then proto=tcp; else proto=udp; fi; }
if [ "$new_conn" -eq 1 ] && [ "$proto" != tcp ]; then echo "zero-loss.sh: --new-conn is TCP" >&2; exit 2; fi

work=$(mktemp -d /tmp/dpgzl.XXXXXX)
tag=dpgzl$$
dp_pid= gen_pid=
stop() {  # stop PID: SIGINT (dpgate prints its counters), SIGKILL after 5 s
  local i
  [ -n "$1" ] || return 0
  kill -INT "$1" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  stop "$gen_pid"
  stop "$dp_pid"
  rm -rf "$work" /var/run/dpdk/"$tag"-*
}
trap cleanup EXIT INT TERM

if [ -z "$dpgate" ] || [ -z "$gen" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" "$root" >/dev/null
  nice -n 10 ninja -C "$build" dpgate dpgate-gen >/dev/null
  dpgate=${dpgate:-$build/dpgate} gen=${gen:-$build/dpgate-gen}
fi

# With --nice, dpgate and the generator each start a session of their own
# (setsid): the kernel's autogroup scheduling shares a CPU between sessions
# first, so a process's nice only matters inside its session; the session's
# autogroup gets the nice level instead (root only, undone when it exits).
launch=
[ "$nice" -eq 0 ] || launch="setsid nice -n $nice"
prioritise() {  # prioritise PID: once PID has its own session, give that autogroup $nice
  local i
  [ "$nice" -ne 0 ] || return 0
  for i in $(seq 1 100); do
    [ "$(ps -o sid= -p "$1" 2>/dev/null | tr -d ' ')" = "$1" ] && break
    sleep 0.02
  done
  # Never the script's own autogroup: only a session the PID leads.
  [ "$(ps -o sid= -p "$1" 2>/dev/null | tr -d ' ')" = "$1" ] && echo "$nice" >"/proc/$1/autogroup" 2>/dev/null || true
}

# schedstat TID: "run_ns wait_ns" of one thread.
schedstat() { awk '{print $1, $2}' "/proc/$1/task/$2/schedstat" 2>/dev/null || echo "0 0"; }
worker_tid() {
  local t
  for t in /proc/"$1"/task/*; do
    case $(cat "$t/comm" 2>/dev/null) in rte-worker-1|lcore-worker-1) basename "$t"; return ;; esac
  done
}

# run_one SERVICES REPEAT: one dpgate, one search; appends a JSON line to $work/results.jsonl.
run_one() {
  local svc=$1 rep=$2 prefix=$tag-$1-$2 rules_line= dst_args=() ct_timeouts=
  [ "$new_conn" -eq 1 ] && ct_timeouts=" timeouts = { tcp_syn_sent = $syn_timeout; };"
  rm -f "$work"/*.sock
  if [ "$svc" -gt 0 ]; then
    python3 "$perf/gen-rules.py" "$work/svc$svc.rules" --services "$svc" --endpoints "$endpoints"
    rules_line="rules = \"$work/svc$svc.rules\";"
    dst_args=(--services "$svc")
  fi
  cat >"$work/dpgate.conf" <<CONF
workers = 1;
idle_sleep_us = 0;
mbuf_pool_size = 16383;
ports = (
  { name = "lan"; device = "$(memif_server 0 "$work" "$ring")";
    addresses = [ "198.18.0.1/24" ]; },
  { name = "wan"; device = "$(memif_server 1 "$work" "$ring")";
    addresses = [ "198.18.101.1/24" ]; }
);
routes = ( { prefix = "198.18.1.0/24"; gateway = "198.18.101.2"; port = "wan"; } );
neighbours = ( { address = "198.18.101.2"; mac = "02:00:00:00:01:02"; port = "wan"; } );
conntrack = { max_flows = $max_flows;$ct_timeouts };
control = { socket = "$work/dpgate.sock"; metrics = ""; };
$rules_line
CONF
  local eal_log=(--log-level=lib.eal:warning --log-level=pmd.net.memif:warning)
  # dpgate's worker on CPU 1, its (sleeping) control thread and the generator on CPU 0.
  $launch "$dpgate" --no-huge --no-pci -m 1024 --file-prefix "$prefix-dut" "${eal_log[@]}" --lcores 0@0,1@1 \
    -- -c "$work/dpgate.conf" >"$work/dpgate-$svc-$rep.log" 2>&1 &
  dp_pid=$!
  prioritise "$dp_pid"
  local i
  if ! wait_running "$work/dpgate-$svc-$rep.log" "$dp_pid"; then
    echo "zero-loss.sh: dpgate did not start:" >&2
    cat "$work/dpgate-$svc-$rep.log" >&2
    exit 1
  fi
  local mode_args=(--flows "$flows")
  [ "$new_conn" -eq 1 ] && mode_args=(--new-ratio 1 --flows 1)
  local wtid s0 s1 t0 t1
  wtid=$(worker_tid "$dp_pid")
  s0=$(schedstat "$dp_pid" "$wtid") t0=$(date +%s.%N)
  memif_client_args "$work" "$ring"
  $launch "$gen" --no-huge --no-pci -m 256 --file-prefix "$prefix-gen" "${eal_log[@]}" --lcores 0@0 \
    "${memif_client[@]}" -- "${memif_aim[@]}" --proto "$proto" --size "$size" \
    "${mode_args[@]}" "${dst_args[@]}" --search --duration "$trial" --max-time "$max_time" \
    --loss "$loss" --retries "$retries" --hold "${gen_extra[@]}" >"$work/gen-$svc-$rep.out" 2>"$work/gen-$svc-$rep.err" &
  gen_pid=$!
  prioritise "$gen_pid"
  # --hold: the generator stays connected after its last line until dpgate
  # has stopped (a memif client leaving under dpgate's polling worker can crash it).
  while kill -0 "$gen_pid" 2>/dev/null && ! grep -q '"kind":"search"' "$work/gen-$svc-$rep.out"; do sleep 0.2; done
  s1=$(schedstat "$dp_pid" "$wtid") t1=$(date +%s.%N)
  stop "$dp_pid"
  dp_pid=
  local rc=0
  for i in $(seq 1 50); do kill -0 "$gen_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$gen_pid" 2>/dev/null; then
    echo "zero-loss.sh: dpgate-gen did not leave when dpgate stopped; stopping it" >&2
    stop "$gen_pid"
  else
    wait "$gen_pid" 2>/dev/null || rc=$?
  fi
  gen_pid=
  rm -rf /var/run/dpdk/"$prefix"-*
  if [ "$rc" -ne 0 ] || ! tail -1 "$work/gen-$svc-$rep.out" | grep -q '"kind":"search"'; then
    echo "zero-loss.sh: dpgate-gen failed (rc $rc):" >&2
    cat "$work/gen-$svc-$rep.err" "$work/gen-$svc-$rep.out" >&2
    tail -12 "$work/dpgate-$svc-$rep.log" >&2
    exit 1
  fi
  python3 - "$work/gen-$svc-$rep.out" >&2 <<'PY'
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["kind"] != "trial":
        continue
    lat = t["latency_us"] or {}
    print(f"zero-loss.sh:   trial {t['trial']:2}: target {t['target_pps'] / 1e6:7.4f} Mpps, offered {t['offered_pps'] / 1e6:7.4f},"
          f" received {t['rx_pps'] / 1e6:7.4f}, lost {t['lost']:>8} ({t['loss_ratio']:.1e}; ring full {t['tx_full']}),"
          f" p99 {lat.get('p99', 0):9.1f} us: {'pass' if t['pass'] else 'FAIL'}"
          f"{'' if not t['generator_limited'] else ' (generator behind: ' + str(t['skipped']) + ' skipped)' if t['target_pps'] else ' (the generator set the rate: dpgate kept up)'}")
PY
  # dpgate's own view: drops by reason and conntrack, from its final counters.
  local drops ct
  drops=$(sed -n 's/^  drops: //p' "$work/dpgate-$svc-$rep.log" | head -1)
  ct=$(sed -n 's/^  conntrack: //p' "$work/dpgate-$svc-$rep.log" | head -1)
  python3 - "$work/gen-$svc-$rep.out" "$svc" "$rep" "$new_conn" "$proto" "$size" "$s0" "$s1" "$t0" "$t1" \
    "$drops" "$ct" "$ring" "$nice" >>"$work/results.jsonl" <<'PY'
import json, sys
out, svc, rep, new_conn, proto, size, s0, s1, t0, t1, drops, ct, ring, nice = sys.argv[1:]
search = json.loads(open(out).read().strip().splitlines()[-1])
run0, wait0 = map(int, s0.split()); run1, wait1 = map(int, s1.split())
wall = float(t1) - float(t0)
print(json.dumps({"services": int(svc), "repeat": int(rep), "mode": "new-conn" if new_conn == "1" else "established",
                  "proto": proto, "size": int(size), "memif_ring": 1 << int(ring), "nice": int(nice), "search": search,
                  "dpgate_worker": {"cpu_share": round((run1 - run0) / 1e9 / wall, 3),
                                    "preempted": round((wait1 - wait0) / 1e9 / wall, 3)},
                  "dpgate_drops": drops, "dpgate_conntrack": ct}))
PY
  tail -1 "$work/results.jsonl"
}

IFS=, read -r -a svc_list <<<"$services"
for rep in $(seq 1 "$repeats"); do
  for svc in "${svc_list[@]}"; do
    echo "zero-loss.sh: services $svc, repeat $rep: searching (up to ${max_time}s)" >&2
    run_one "$svc" "$rep"
  done
done
[ -z "$json" ] || cp "$work/results.jsonl" "$json"
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["services"], []).append(r)
print()
print("| services | mode | frame | zero-loss Mpps (median [min-max]) | latency p50 / p99 / max us | trials | worker preempted |")
print("|---|---|---|---|---|---|---|")
med = {}
for svc, rs in by.items():
    rates = [r["search"]["zero_loss_pps"] / 1e6 for r in rs]
    med[svc] = statistics.median(rates)
    best = max(rs, key=lambda r: r["search"]["zero_loss_pps"])
    lat = best["search"].get("latency_us") or {}
    print(f"| {svc} | {rs[0]['mode']} {rs[0]['proto']} | {rs[0]['size']} B | {med[svc]:.4f} [{min(rates):.4f}-{max(rates):.4f}] "
          f"| {lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f} / {lat.get('max', 0):.1f} "
          f"| {sum(r['search']['trials'] for r in rs)} | {max(r['dpgate_worker']['preempted'] for r in rs):.0%} |")
svcs = list(by)
if len(svcs) > 1 and med[svcs[0]] > 0:
    print(f"\nratio {svcs[-1]} / {svcs[0]} services: {med[svcs[-1]] / med[svcs[0]]:.3f}")
PY
