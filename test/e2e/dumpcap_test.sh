#!/usr/bin/env bash
# Capture: Debian's dpdk-dumpcap, a secondary DPDK process, captures packets
# from a running dpgate (rte_pdump) into a pcapng file that tcpdump reads back.
# A secondary process needs the primary's memory in shared hugepages: the
# test reserves 512 MiB of them for its run and gives them back (skipped, 77,
# where the machine cannot reserve them). Before that, without hugepages:
# dpgate warns about a pcap port whose arguments a capture would get cut.
# Usage: dumpcap_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/test/e2e/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 77; }
work="/tmp/dpgdc$$"
mkdir -p "$work"
prefix="dpgdc$$"
old_pages=$(cat /proc/sys/vm/nr_hugepages)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  umount "$work/huge" 2>/dev/null || true
  echo "$old_pages" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work" "/var/run/dpdk/$prefix" "/var/run/dpdk/${prefix}w"
}
trap cleanup EXIT INT TERM

# An echo request looping forever on a pcap port: dpgate answers each one.
python3 - "$work" "$root/test/e2e" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[2])
import pcap_frames as pf
lan = bytes.fromhex("027063617000")  # net_pcap0's MAC
req = pf.ipv4("198.18.1.2", "198.18.1.1", 1, pf.icmp(8, 0, struct.pack("!HH", 7, 1), b"capture me"))
pf.write_pcap(f"{sys.argv[1]}/in.pcap", [pf.eth(lan, pf.CLIENT_MAC, req)])
PY
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
neighbours = ( { address = "198.18.1.2"; mac = "02:cc:00:00:00:02"; port = "lan"; } );
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
}
# wait_running LOG: up to 10 s for dpgate's "running" line.
wait_running() {
  for _ in $(seq 1 100); do grep -qs "dpgate: running" "$1" && break; sleep 0.1; done
}

# The pcap paths are relative to the working directory both processes share:
# net_pcap hands dpdk-dumpcap only the first 63 characters of its arguments.
# Two absolute paths under /tmp/dpgdcPID did not fit: with a 3-digit PID the
# cut fell inside "infinite_rx" and dpdk-dumpcap found no port.
cd "$work"
write_conf "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap,infinite_rx=1" >dc.conf

# Longer arguments: dpgate says at start-up that a capture cannot attach
# (no hugepages needed for that).
long="$work/a-directory-name-long-enough-to-matter"
mkdir "$long"
cp in.pcap "$long/"
write_conf "net_pcap0,rx_pcap=$long/in.pcap,tx_pcap=$long/out.pcap" >long.conf
"$build/dpgate" -l 0-1 --no-pci --no-huge -m 256 --file-prefix "${prefix}w" --log-level=lib.eal:error \
  -- -c long.conf >long.log 2>&1 &
pid=$!
wait_running long.log
check "dpgate warns that dpdk-dumpcap cannot attach to a port with long pcap arguments" \
  grep -q "port lan: net_pcap passes secondary processes (dpdk-dumpcap) only the first 63 characters" long.log
kill -TERM "$pid"
wait "$pid" || true
pid=

mkdir "$work/huge"
echo $((old_pages + 256)) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 200 ] || ! mount -t hugetlbfs nodev "$work/huge" 2>/dev/null; then
  echo "cannot reserve hugepages here: skipped"
  exit 77
fi

"$build/dpgate" -l 0-1 --no-pci --huge-dir "$work/huge" -m 256 --file-prefix "$prefix" --log-level=lib.eal:error \
  -- -c "$work/dc.conf" >"$work/dpgate.log" 2>&1 &
pid=$!
wait_running "$work/dpgate.log"
check "dpgate runs as a primary process on hugepages with a file prefix" grep -q "dpgate: running" "$work/dpgate.log"
check "and sees nothing that would keep a capture from attaching" bash -c "! grep -q 'capture cannot attach' $work/dpgate.log"
sleep 2
# One capture a direction, each stopping at its own count. dpdk-dumpcap's
# request makes dpgate install the receive callbacks before the transmit ones,
# and at this source's rate forty received packets can pass between the two: an
# unfiltered "-c 40" caught only requests on CI. The filter (libpcap syntax,
# run in dpgate's callbacks as eBPF) needs forty of each kind. It matches on
# addresses: DPDK 22.11 converts the header-length load of "icmp[0] == 0"
# wrongly, and such a filter matches nothing.
# capture NAME FILTER: forty matching packets into NAME.pcapng.
capture() {
  timeout 20 dpdk-dumpcap --file-prefix "$prefix" -i 0 -c 40 -f "$2" -w "$work/$1.pcapng" >"$work/$1.txt" 2>&1 || true
  tail -6 "$work/$1.txt"
}
capture requests 'src host 198.18.1.2'
check "dpdk-dumpcap captured the echo requests dpgate received" bash -c "
  tcpdump -nr $work/requests.pcapng 2>/dev/null | grep -q '198.18.1.2 > 198.18.1.1: ICMP echo request, id 7'"
capture replies 'src host 198.18.1.1'
check "and the echo replies dpgate sent" bash -c "
  tcpdump -nr $work/replies.pcapng 2>/dev/null | grep -q '198.18.1.1 > 198.18.1.2: ICMP echo reply, id 7'"
# dpdk-dumpcap stops at the first burst that reaches its count: 40 or more.
check "and its filter kept only what it asked for" bash -c "
  all=\$(tcpdump -nr $work/replies.pcapng 2>/dev/null | wc -l)
  replies=\$(tcpdump -nr $work/replies.pcapng 2>/dev/null | grep -c 'ICMP echo reply, id 7')
  [ \$all -ge 40 ] && [ \$all -eq \$replies ]"
kill -TERM "$pid"
wait "$pid" || true
pid=
check "dpgate stopped cleanly after the capture" grep -q "final counters" "$work/dpgate.log"
e2e_finish
