#!/usr/bin/env bash
# Differential test: the Linux kernel is the oracle. For each seed, a random
# rule set (filter + nat) is loaded into a namespace router twice - once into
# the kernel's netfilter, once into dpgate on the same interfaces - and the
# same probes (TCP connects with a request, UDP queries, pings) are sent from
# the client namespace. Every probe must have the same outcome (answered by
# which server, refused, unreachable with which error, or silence).
# Usage: diff_test.sh BUILD_DIR [SEEDS...]     (default seeds 1..6)
set -euo pipefail
build=$(cd "$1" && pwd)
shift
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5 6)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns

e2e_begin "dpgd"
C=$(topo_ns c) R=$(topo_ns r) S=$(topo_ns s)
# The kernel and dpgate see the same interface names: what -i/-o match.
for dev in lan wan; do
  ip -n "$R" link set "${dev}0" down
  ip -n "$R" link set "${dev}0" name "$dev"
  ip -n "$R" link set "$dev" up
done
for ns in "$R" "$S"; do ip netns exec "$ns" sysctl -qw net.ipv4.icmp_ratelimit=0; done
for a in 11 12; do ip -n "$S" addr add "198.18.2.$a/24" dev eth0; done
for a in 2 11 12; do
  for p in 80 443 8080; do
    ip netns exec "$S" python3 "$root/test/e2e/echo_server.py" "s$a:$p" "198.18.2.$a" "$p" &
  done
  ip netns exec "$S" python3 "$root/test/diff/udp_echo.py" "s$a:53" "198.18.2.$a" 53 &
done
sleep 1

kernel_router() {  # on|off RULES
  if [ "$1" = on ]; then
    ip -n "$R" addr add 198.18.1.1/24 dev lan
    ip -n "$R" addr add 198.18.2.1/24 dev wan
    ip -n "$R" route add 198.19.0.0/16 via 198.18.2.2
    ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$R" iptables-restore <"$2"
  else
    ip netns exec "$R" iptables-restore <<'FLUSH'
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
FLUSH
    ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=0
    ip -n "$R" addr flush dev lan
    ip -n "$R" addr flush dev wan
  fi
}

total=0
for seed in "${seeds[@]}"; do
  python3 "$root/test/diff/gen_rules.py" "$seed" "$work/$seed.rules" "$work/probes"
  kernel_router on "$work/$seed.rules"
  ip netns exec "$C" ip neigh flush all
  ip netns exec "$C" python3 "$root/test/diff/probe.py" "$work/probes" >"$work/$seed.kernel"
  kernel_router off
  cat >"$work/diff.conf" <<CONF
workers = 2;
idle_sleep_us = 20;
rx_descriptors = 256;
tx_descriptors = 256;
mbuf_pool_size = 4095;
ports = (
  { name = "lan"; device = "net_af_packet0,iface=lan,qpairs=2"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_af_packet1,iface=wan,qpairs=2"; addresses = [ "198.18.2.1/24" ]; }
);
routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.2.2"; port = "wan"; } );
icmp = { rate = 100000; burst = 1000; };
rules = "$work/$seed.rules";
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
  topo_start_dpgate "$build/dpgate" "$work/diff.conf" "$work/dpgate-$seed.log" --lcores "0@0,1@0,2@1"
  ip netns exec "$C" ip neigh flush all
  ip netns exec "$C" python3 "$root/test/diff/probe.py" "$work/probes" >"$work/$seed.dpgate"
  topo_stop_dpgate
  n=$(wc -l <"$work/probes")
  total=$((total + n))
  echo "seed $seed: $(grep -c '^-A' "$work/$seed.rules") rules, $n probes"
  if ! diff "$work/$seed.kernel" "$work/$seed.dpgate" >"$work/$seed.diff"; then
    sed 's/^/    /' "$work/$seed.rules"
    # dpgate's final counters (drops by reason, conntrack, ports): the work
    # dir goes with the test, and a one-off failure needs them in the log.
    echo "    dpgate's counters at exit:"
    tail -n 30 "$work/dpgate-$seed.log" | sed 's/^/      /'
  fi
  check "seed $seed: dpgate and the kernel agree on all $n probes" bash -c "cat $work/$seed.diff; [ ! -s $work/$seed.diff ]"
done
echo "compared $total probes over ${#seeds[@]} random rule sets"
e2e_finish
