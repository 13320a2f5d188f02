#!/usr/bin/env bash
# The malformed-input corpus through the real binary: dpgate on net_pcap ports
# reads malformed_frames.py's frames (each bad frame followed by good traffic
# both ways) and must drop every bad frame under its named reason, answer with
# exactly the ICMP errors RFC 1812 asks for, and forward every good packet
# byte for byte. Two phases: the corpus, then RFC 1812 destination/source
# checks (255.255.255.255, multicast, directed-broadcast sources).
# Usage: malformed_test.sh BUILD_DIR
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/test/e2e/lib.sh"
gen="$root/test/e2e/malformed_frames.py"
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$work" "/var/run/dpdk/dpgmal$$"  # the EAL makes it even with --no-shconf
}
trap cleanup EXIT INT TERM

# run_dpgate DIR: one run over DIR/in_*.pcap, output in DIR/out_*.pcap, log in DIR/dpgate.log
run_dpgate() {
  local dir=$1 i
  cat >"$dir/malformed.conf" <<CONF
workers = 1;
rx_descriptors = 256;
tx_descriptors = 256;
mbuf_pool_size = 4095;
ports = (
  { name = "lan"; device = "net_pcap0,rx_pcap=$dir/in_lan.pcap,tx_pcap=$dir/out_lan.pcap"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_pcap1,rx_pcap=$dir/in_wan.pcap,tx_pcap=$dir/out_wan.pcap"; addresses = [ "198.18.2.1/24" ]; mtu = 1400; }
);
routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.2.2"; port = "wan"; } );
neighbours = (
  { address = "198.18.2.2"; mac = "02:55:00:00:00:02"; port = "wan"; },
  { address = "198.18.1.2"; mac = "02:cc:00:00:00:02"; port = "lan"; } );
icmp = { rate = 1000; burst = 200; };
CONF
  "$build/dpgate" --no-huge --no-pci -m 256 --no-shconf --file-prefix "dpgmal$$" -l 0-1 \
    --log-level=lib.eal:error -- -c "$dir/malformed.conf" >"$dir/dpgate.log" 2>&1 &
  pid=$!
  for i in $(seq 1 50); do grep -q "dpgate: running" "$dir/dpgate.log" && break; sleep 0.1; done
  # The pcap files are read at once; give the worker time to drain them.
  sleep 1
  kill -TERM "$pid"
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  local rc=0
  wait "$pid" || rc=$?
  pid=
  echo "$rc" >"$dir/exit_status"
}

empty_pcaps() {
  python3 - "$1" <<'PY'
import struct, sys
for p in ("in_lan", "in_wan"):
    open(f"{sys.argv[1]}/{p}.pcap", "wb").write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
PY
}

# The pcap PMD picks the ports' MACs: learn them from an empty run first.
mkdir -p "$work/discover"
empty_pcaps "$work/discover"
run_dpgate "$work/discover"
lan_mac=$(sed -n 's/^dpgate: port lan: .* mac \([0-9a-f:]*\),.*/\1/p' "$work/discover/dpgate.log")
wan_mac=$(sed -n 's/^dpgate: port wan: .* mac \([0-9a-f:]*\),.*/\1/p' "$work/discover/dpgate.log")
check "dpgate reports its ports' MACs" test -n "$lan_mac" -a -n "$wan_mac"

for phase in corpus rfc1812; do
  dir="$work/$phase"
  mkdir -p "$dir"
  python3 "$gen" gen "$phase" "$dir" "$lan_mac" "$wan_mac"
  run_dpgate "$dir"
  sed -n '/final counters/,$p' "$dir/dpgate.log"
  check "$phase: dpgate stops cleanly after the run (exit 0, final counters)" \
    bash -c "[ \"\$(cat $dir/exit_status)\" = 0 ] && grep -q 'final counters' $dir/dpgate.log"
  check "$phase: every bad frame is counted under its named drop reason" python3 "$gen" drops "$dir" "$dir/dpgate.log"
  check "$phase: good traffic is forwarded exactly and only the expected ICMP errors are sent" \
    python3 "$gen" frames "$dir"
done
e2e_finish
