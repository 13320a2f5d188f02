#!/usr/bin/env bash
# Capture: Debian's dpdk-dumpcap, a secondary DPDK process, captures packets
# from a running dpgate (rte_pdump) into a pcapng file that tcpdump reads back:
# a Linux client in a namespace pings dpgate on an AF_PACKET port. A secondary
# process needs the primary's memory in shared hugepages: the test reserves
# 512 MiB of them for its run and gives them back (skipped, 77, where the
# machine cannot reserve them). Before that, without hugepages: dpgate warns
# about a pcap port whose arguments a capture would get cut.
# Usage: dumpcap_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns
e2e_begin dpgdc
C=$(topo_ns c) R=$(topo_ns r)
old_pages=$(cat /proc/sys/vm/nr_hugepages)
# dpgate holds the hugepages: stopped before they are unmounted and given back.
cleanup() {
  topo_stop_dpgate
  umount "$work/huge" 2>/dev/null || true
  echo "$old_pages" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then topo_down; else e2e_end; fi
}
trap cleanup EXIT INT TERM

# write_conf DEVICE: the configuration of a one-port dpgate on DEVICE.
write_conf() {
  cat <<CONF
workers = 1;
rx_descriptors = 256;
tx_descriptors = 256;
mbuf_pool_size = 4095;
idle_sleep_us = 50;
ports = (
  { name = "lan"; device = "$1"; addresses = [ "198.18.1.1/24" ]; }
);
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
}

# A net_pcap port whose arguments are longer than the 63 characters net_pcap
# hands dpdk-dumpcap: dpgate says at start-up that a capture cannot attach (no
# hugepages needed for that). With a 3-digit PID, two absolute paths under
# /tmp/dpgdcPID were enough for the cut to fall inside "infinite_rx".
long="$work/a-directory-name-long-enough-to-matter"
mkdir "$long"
python3 - "$long/in.pcap" "$root/test/e2e" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import pcap_frames as pf
req = pf.ipv4("198.18.1.2", "198.18.1.1", 1, pf.icmp(8, 0, b"\0\7\0\1", b"capture me"))
pf.write_pcap(sys.argv[1], [pf.eth(bytes.fromhex("027063617000"), pf.CLIENT_MAC, req)])
PY
write_conf "net_pcap0,rx_pcap=$long/in.pcap,tx_pcap=$long/out.pcap" >"$work/long.conf"
topo_start_dpgate "$build/dpgate" "$work/long.conf" "$work/long.log" -l 0-1
check "dpgate warns that dpdk-dumpcap cannot attach to a port with long pcap arguments" \
  grep -q "port lan: net_pcap passes secondary processes (dpdk-dumpcap) only the first 63 characters" "$work/long.log"
topo_stop_dpgate

mkdir "$work/huge"
echo $((old_pages + 256)) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 200 ] || ! mount -t hugetlbfs nodev "$work/huge" 2>/dev/null; then
  echo "cannot reserve hugepages here: skipped"
  exit 77
fi

# The capture: dpgate on an AF_PACKET port in the router namespace, a primary
# process on hugepages; dpdk-dumpcap runs beside it (same namespace, so that
# the port's promiscuous switch finds lan0). The client pings every 50 ms.
# A real peer instead of a pcap source looping forever: dpgate's worker idles
# between pings, so DPDK 22.11's capture races have almost nothing to hit:
# - dumpcap's request installs the receive callbacks before the transmit ones,
#   and a looping source's forty first received packets passed between the
#   two on CI: the capture had no echo reply;
# - dumpcap frees its ring and mempool as soon as dpgate has removed the
#   callbacks, without waiting for a worker still inside one: a worker
#   preempted there with a burst in hand crashed in rte_pcapng_copy (seen
#   here with both cores busy; DPDK fixed it after 22.11, with a use count).
write_conf "net_af_packet0,iface=lan0" >"$work/dc.conf"
DPGATE_MEMORY=(--huge-dir "$work/huge" -m 256)
topo_start_dpgate "$build/dpgate" "$work/dc.conf" "$work/dpgate.log" -l 0-1
check "dpgate runs as a primary process on hugepages with a file prefix" grep -q "dpgate: running" "$work/dpgate.log"
check "and sees nothing that would keep a capture from attaching" bash -c "! grep -q 'capture cannot attach' $work/dpgate.log"
ip netns exec "$C" ping -i 0.05 -c 600 -W 1 198.18.1.1 >"$work/ping.txt" 2>&1 &
ping_pid=$!
# capture NAME COUNT [FILTER]: COUNT packets (or the first burst past it) into
# NAME.pcapng, waiting at most 20 s.
capture() {
  timeout 20 ip netns exec "$R" dpdk-dumpcap --file-prefix "$TOPO" -i 0 -c "$2" ${3:+-f "$3"} \
    -w "$work/$1.pcapng" >"$work/$1.txt" 2>&1 || true
  tail -3 "$work/$1.txt"
}
capture both 8
check "dpdk-dumpcap captured the echo requests dpgate received" bash -c "
  tcpdump -nr $work/both.pcapng 2>/dev/null | grep -q '198.18.1.2 > 198.18.1.1: ICMP echo request'"
check "and the echo replies dpgate sent" bash -c "
  tcpdump -nr $work/both.pcapng 2>/dev/null | grep -q '198.18.1.1 > 198.18.1.2: ICMP echo reply'"
# The filter (libpcap syntax) runs in dpgate's callbacks as eBPF. It matches on
# addresses: with DPDK 22.11, "icmp[0] == 0" matches nothing ("udp dst port 9"
# works).
capture replies 6 'src host 198.18.1.1'
check "a capture filter keeps only what it asks for: dpgate's replies" bash -c "
  all=\$(tcpdump -nr $work/replies.pcapng 2>/dev/null | wc -l)
  replies=\$(tcpdump -nr $work/replies.pcapng 2>/dev/null | grep -c '198.18.1.1 > 198.18.1.2: ICMP echo reply')
  [ \$all -ge 6 ] && [ \$all -eq \$replies ]"
kill -INT "$ping_pid" 2>/dev/null || true
wait "$ping_pid" || true
# ping stops at SIGINT without waiting for the reply to its last request.
check "the client's pings were answered while captures came and went" \
  awk '/packets transmitted/ {sent = $1; got = $4} END {exit !(got > 0 && sent - got <= 1)}' "$work/ping.txt"
topo_stop_dpgate
check "dpgate stopped cleanly after the captures" grep -q "final counters" "$work/dpgate.log"
e2e_finish
