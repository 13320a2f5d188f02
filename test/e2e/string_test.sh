#!/usr/bin/env bash
# End to end: -m string in dpgate against the kernel's xt_string.
# Usage: string_test.sh BUILD_DIR [SEED]
# 1. Differential, in rounds: the same random string rules (raw PREROUTING,
#    where both see the datagram as sent: the kernel decrements the TTL
#    before FORWARD, dpgate after POSTROUTING) in a kernel namespace router
#    and in dpgate; the same random UDP datagrams (fixed bytes) through each.
#    Every rule's packet/byte counters and the datagrams delivered must match.
# 2. An HTTP request with a blocked string is refused; others pass.
set -euo pipefail
build=$(cd "$1" && pwd)
seed=${2:-20261123}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns

TOPO="dpgs$$"
K="dpgk$$"  # the kernel router's namespaces: ${K}c ${K}r ${K}s
work=$(mktemp -d)
cleanup() {
  topo_stop_dpgate
  topo_down
  for ns in "${K}c" "${K}r" "${K}s"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ -n "${STRING_TEST_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

corpus=(python3 "$root/test/e2e/string_corpus.py")
rounds=4
# 24 counting rules + 8 deciding ones: a datagram matches at most 25 rules,
# within the 32 matched rules a HookResult records for the counters.
for r in $(seq 1 $rounds); do
  mkdir -p "$work/$r"
  "${corpus[@]}" gen "$((seed + r))" 24 400 "$work/$r"
done

# ---- the kernel: a namespace router with the same addresses ----
for ns in "${K}c" "${K}r" "${K}s"; do
  ip netns add "$ns"
  topo_quiet_ipv6 "$ns"
  ip -n "$ns" link set lo up
done
ip -n "${K}r" link add lan0 type veth peer name eth0 netns "${K}c"
ip -n "${K}r" link add wan0 type veth peer name eth0 netns "${K}s"
for ns in "${K}c" "${K}s"; do ip -n "$ns" link set eth0 up; done
for dev in lan0 wan0; do
  ip netns exec "${K}r" ethtool -K "$dev" gro off >/dev/null 2>&1 || true
  ip -n "${K}r" link set "$dev" up
done
ip -n "${K}r" addr add 198.18.1.1/24 dev lan0
ip -n "${K}r" addr add 198.18.2.1/24 dev wan0
ip netns exec "${K}r" sysctl -qw net.ipv4.ip_forward=1
ip -n "${K}c" addr add 198.18.1.2/24 dev eth0
ip -n "${K}c" route add default via 198.18.1.1
ip -n "${K}s" addr add 198.18.2.2/24 dev eth0
ip -n "${K}s" route add default via 198.18.2.1

# ---- dpgate ----
topo_up
C=$(topo_ns c) S=$(topo_ns s)
cat >"$work/string.conf" <<CONF
workers = 1;
idle_sleep_us = 20;
rx_descriptors = 512;
tx_descriptors = 512;
mbuf_pool_size = 4095;
ports = (
  { name = "lan"; device = "net_af_packet0,iface=lan0,qpairs=1"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_af_packet1,iface=wan0,qpairs=1"; addresses = [ "198.18.2.1/24" ]; }
);
control = { socket = "$work/dpgate.sock"; };
CONF
topo_start_dpgate "$build/dpgate" "$work/string.conf" "$work/dpgate.log" -l 0-1
ctl() { python3 "$root/test/e2e/ctl.py" "$work/dpgate.sock" "$@"; }

# Neighbours first (a ping is not UDP to port 9999: no rule counts it).
ip netns exec "$C" ping -c 1 -W 2 198.18.2.2 >/dev/null || true
ip netns exec "${K}c" ping -c 1 -W 2 198.18.2.2 >/dev/null || true

run_corpus() {  # CLIENT_NS SERVER_NS CORPUS OUT
  ip netns exec "$2" "${corpus[@]}" recv 9999 "$4" 3 &
  local receiver=$!
  sleep 0.5
  ip netns exec "$1" "${corpus[@]}" send "$3" 198.18.1.2 198.18.2.2
  wait "$receiver"
}
counters() { grep -E '^\[[0-9]+:[0-9]+\] -A' | sed -E 's/^\[([0-9]+):([0-9]+)\].*/\1 \2/'; }

for r in $(seq 1 $rounds); do
  d="$work/$r"
  ip netns exec "${K}r" iptables-restore <"$d/diff.rules"
  "$build/dpgatectl" -s "$work/dpgate.sock" apply "$d/diff.rules" >/dev/null
  run_corpus "${K}c" "${K}s" "$d/corpus.txt" "$d/kernel.got"
  run_corpus "$C" "$S" "$d/corpus.txt" "$d/dpgate.got"
  ip netns exec "${K}r" iptables-save -c -t raw | counters >"$d/kernel.counters"
  ctl save -c | counters >"$d/dpgate.counters"
  echo "round $r: $(wc -l <"$d/corpus.txt") datagrams, $(grep -c -- '-m string' "$d/diff.rules") string rules;" \
    "kernel delivered $(wc -l <"$d/kernel.got"), dpgate $(wc -l <"$d/dpgate.got")"
  check "round $r: the rules counted the corpus in the kernel" \
    bash -c "[ \$(awk '{s+=\$1} END {print s+0}' $d/kernel.counters) -gt 1500 ]"
  check "round $r: every string rule's packet and byte counters equal the kernel's" \
    diff "$d/kernel.counters" "$d/dpgate.counters"
  check "round $r: the same datagrams were dropped and delivered as by the kernel" \
    diff "$d/kernel.got" "$d/dpgate.got"
  check "round $r: some datagrams were dropped and some delivered" \
    bash -c "n=\$(wc -l <$d/kernel.got); [ \$n -gt 0 ] && [ \$n -lt 400 ]"
done

# ---- HTTP: a request naming a blocked path is reset, others pass ----
cat >"$work/http.rules" <<'RULES'
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 8080 -m string --string "GET /secret" --algo bm --to 200 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp -m tcp --dport 8080 -m string --string "x-evil:" --algo kmp --icase -j DROP
COMMIT
RULES
"$build/dpgatectl" -s "$work/dpgate.sock" apply "$work/http.rules" >/dev/null
mkdir -p "$work/www"
echo public >"$work/www/public"
echo secret >"$work/www/secret"
ip netns exec "$S" python3 -m http.server 8080 --bind 0.0.0.0 --directory "$work/www" >/dev/null 2>&1 &
for i in $(seq 1 50); do ip netns exec "$S" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done
get() { ip netns exec "$C" curl -sS --max-time 3 "$@"; }
check "a request for a public page passes" bash -c "$(declare -f get); C=$C; get http://198.18.2.2:8080/public | grep -qx public"
check "a request containing the blocked string is reset by dpgate" \
  bash -c "$(declare -f get); C=$C; ! out=\$(get http://198.18.2.2:8080/secret 2>&1); echo \"\$out\"; echo \"\$out\" | grep -qi 'reset'"
check "a header matched case-insensitively is dropped (the request times out)" \
  bash -c "$(declare -f get); C=$C; ! get -H 'X-EVIL: yes' http://198.18.2.2:8080/public"
check "the public page still passes afterwards" bash -c "$(declare -f get); C=$C; get http://198.18.2.2:8080/public | grep -qx public"

topo_stop_dpgate
check "dpgate stopped cleanly" grep -q "final counters" "$work/dpgate.log"
e2e_finish
