#!/usr/bin/env bash
# The Linux kernel as the peer router/firewall: a namespace router between a
# generator and a sink namespace, with an optional iptables-restore rule set.
# The generator (testpmd io: net_pcap infinite_rx -> net_af_packet) runs on
# CPU 0; RPS steers the router's receive processing to CPU 1, the core the
# DPDK peers forward on. Prints one JSON sample like measure.py's:
# packets in/out are the router's lan0 rx / wan0 tx counters over the window,
# CPU is CPU 1's softirq time from /proc/stat.
# Usage: perf/kernel-peer.sh PCAP [--rules FILE] [--warmup S] [--window S] [--tsc-hz HZ] [--frames N]
# Topology (198.18.0.0/15 only):
#   ${tag}g g0 --veth-- lan0 198.18.0.1/24 [${tag}r] wan0 198.18.101.1/24 --veth-- s0 [${tag}s]
#   route 198.18.1.0/24 via 198.18.101.2, a static neighbour whose MAC is not s0's:
#   the sink drops every frame at once as addressed to another host.
set -euo pipefail
usage() { sed -n '9p' "$0" | sed 's/^# //' >&2; exit 2; }
[ $# -ge 1 ] || usage
pcap=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
rules= warmup=1 window=2 tsc_hz=0 frames=0
while [ $# -gt 0 ]; do
  case $1 in
    --rules) rules=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --window) window=$2; shift ;;
    --tsc-hz) tsc_hz=$2; shift ;;
    --frames) frames=$2; shift ;;
    *) usage ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "kernel-peer: needs root" >&2; exit 1; }
[ -f "$pcap" ] || { echo "kernel-peer: no such pcap: $pcap" >&2; exit 1; }

tag=dpgk$$
g=${tag}g r=${tag}r s=${tag}s
log=$(mktemp /tmp/dpgk.XXXXXX)
gen_pid=
cleanup() {
  if [ -n "$gen_pid" ]; then kill -9 "$gen_pid" 2>/dev/null || true; wait "$gen_pid" 2>/dev/null || true; fi
  local ns
  for ns in "$g" "$r" "$s"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$log" /var/run/dpdk/"$tag"
}
trap cleanup EXIT INT TERM

# The pcap's destination MAC becomes the router's lan0 MAC.
dst_mac=$(python3 -c "
import sys; f = open(sys.argv[1], 'rb'); f.read(24 + 16)
print(':'.join(f'{b:02x}' for b in f.read(6)))" "$pcap")

for ns in "$g" "$r" "$s"; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$r" link add lan0 type veth peer name g0 netns "$g"
ip -n "$r" link add wan0 type veth peer name s0 netns "$s"
ip -n "$r" link set lan0 address "$dst_mac"
for pair in "$g g0" "$r lan0" "$r wan0" "$s s0"; do
  set -- $pair
  ip netns exec "$1" ethtool -K "$2" rx off tx off tso off gso off gro off >/dev/null 2>&1 || true
  ip -n "$1" link set "$2" up
done
ip -n "$r" addr add 198.18.0.1/24 dev lan0
ip -n "$r" addr add 198.18.101.1/24 dev wan0
ip -n "$r" neigh add 198.18.101.2 lladdr 02:00:00:00:01:02 dev wan0 nud permanent
ip -n "$r" route add 198.18.1.0/24 via 198.18.101.2
ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.lan0.rp_filter=0
ip netns exec "$r" sh -c 'echo 2 > /sys/class/net/lan0/queues/rx-0/rps_cpus'
if [ -n "$rules" ]; then ip netns exec "$r" iptables-restore <"$rules"; fi

# infinite_rx holds the whole pcap in mbufs (--frames: its frame count).
mbufs=$(( frames + 16384 > 65536 ? frames + 16384 : 65536 ))
mem=$(( mbufs * 4 / 1000 + 1024 ))  # ~2.2 KB an mbuf plus the EAL's own, as perf/run.sh
ip netns exec "$g" dpdk-testpmd --no-huge --no-pci -m "$mem" --file-prefix "$tag" --lcores 0@0,1@0 \
  --log-level=lib.eal:warning --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" \
  --vdev net_af_packet0,iface=g0,qpairs=1 -- --forward-mode=io --nb-cores=1 --total-num-mbufs="$mbufs" \
  --stats-period 3600 </dev/null >"$log" 2>&1 &
gen_pid=$!

counter() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }
# cpu1's softirq+irq jiffies (USER_HZ).
cpu1_irq() { awk '$1 == "cpu1" { print $7 + $8 }' /proc/stat; }
# A pcap of 1 M frames takes seconds to load, and many more on a host busy
# with something else: wait by the clock, not by a count of polls.
deadline=$((SECONDS + 90))
while [ "$SECONDS" -lt "$deadline" ]; do
  [ "$(counter "$r" wan0 tx_packets)" -gt 0 ] && break
  kill -0 "$gen_pid" 2>/dev/null || { echo "kernel-peer: generator exited:" >&2; tail -5 "$log" >&2; exit 1; }
  sleep 0.1
done
[ "$(counter "$r" wan0 tx_packets)" -gt 0 ] || { echo "kernel-peer: no packets through the router in 90 s (a large pcap loads slowly)" >&2; exit 1; }
sleep "$warmup"
t0=$(date +%s.%N) in0=$(counter "$r" lan0 rx_packets) out0=$(counter "$r" wan0 tx_packets) c0=$(cpu1_irq)
sleep "$window"
t1=$(date +%s.%N) in1=$(counter "$r" lan0 rx_packets) out1=$(counter "$r" wan0 tx_packets) c1=$(cpu1_irq)
python3 - "$t0" "$t1" "$in0" "$in1" "$out0" "$out1" "$c0" "$c1" "$(getconf CLK_TCK)" "$tsc_hz" <<'PY'
import json, sys
t0, t1, in0, in1, out0, out1, c0, c1, hz, tsc = map(float, sys.argv[1:])
wall, out, cpu = t1 - t0, out1 - out0, (c1 - c0) / hz
r = {"window_s": round(wall, 4), "pkts_in": int(in1 - in0), "pkts_out": int(out), "tx_errors": 0,
     "threads": 1, "cpu_s": round(cpu, 4), "preempted": None, "mpps": round(out / wall / 1e6, 4),
     "mpps_per_core": round(out / cpu / 1e6, 4) if cpu > 0 else None}
if tsc and out and cpu:
    r["cycles_per_pkt"] = round(cpu * tsc / out, 2)
print(json.dumps(r))
PY
