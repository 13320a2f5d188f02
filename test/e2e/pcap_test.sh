#!/usr/bin/env bash
# Deterministic: dpgate on net_pcap ports reads crafted frames from pcap files
# and writes what it sends to pcap files; the output must equal, byte for
# byte, what pcap_frames.py computes on its own, and two runs must agree.
# Usage: pcap_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/test/e2e/lib.sh"
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work" "/var/run/dpdk/dpgpcap$$"
}
trap cleanup EXIT INT TERM

# run_dpgate TAG: one run over in_*.pcap, output in out_*.pcap, log in TAG.log
run_dpgate() {
  local tag=$1
  cat >"$work/pcap.conf" <<CONF
workers = 1;
rx_descriptors = 256;
tx_descriptors = 256;
mbuf_pool_size = 4095;
ports = (
  { name = "lan"; device = "net_pcap0,rx_pcap=$work/in_lan.pcap,tx_pcap=$work/out_lan.pcap"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_pcap1,rx_pcap=$work/in_wan.pcap,tx_pcap=$work/out_wan.pcap"; addresses = [ "198.18.2.1/24" ]; mtu = 1400; }
);
routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.2.2"; port = "wan"; } );
neighbours = (
  { address = "198.18.2.2"; mac = "02:55:00:00:00:02"; port = "wan"; },
  { address = "198.18.1.2"; mac = "02:cc:00:00:00:02"; port = "lan"; } );
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
  "$build/dpgate" --no-huge --no-pci -m 256 --no-shconf --file-prefix "dpgpcap$$" -l 0-1 \
    --log-level=lib.eal:error -- -c "$work/pcap.conf" >"$work/$tag.log" 2>&1 &
  pid=$!
  local i
  for i in $(seq 1 50); do grep -q "dpgate: running" "$work/$tag.log" && break; sleep 0.1; done
  sleep 1  # the files are read at once; leave time for the single burst to drain
  kill -TERM "$pid"
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" || true
  pid=
}

# The pcap PMD picks the ports' MACs: learn them from an empty run first.
python3 - "$work" <<'PY'
import struct, sys
for p in ("in_lan", "in_wan"):
    open(f"{sys.argv[1]}/{p}.pcap", "wb").write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
PY
run_dpgate discover
lan_mac=$(sed -n 's/^dpgate: port lan: .* mac \([0-9a-f:]*\),.*/\1/p' "$work/discover.log")
wan_mac=$(sed -n 's/^dpgate: port wan: .* mac \([0-9a-f:]*\),.*/\1/p' "$work/discover.log")
check "dpgate reports its ports' MACs" test -n "$lan_mac" -a -n "$wan_mac"

python3 "$root/test/e2e/pcap_frames.py" gen "$work" "$lan_mac" "$wan_mac"
run_dpgate first
cat "$work/first.log"
check "every output frame is exactly the expected one" python3 "$root/test/e2e/pcap_frames.py" compare "$work"
check "the bad checksum and the foreign MAC were counted" \
  bash -c "grep -q 'bad_ip_checksum=1' $work/first.log && grep -q 'not_for_us=1' $work/first.log"
cp "$work/out_lan.pcap" "$work/first_lan.pcap"
cp "$work/out_wan.pcap" "$work/first_wan.pcap"
run_dpgate second
check "a second run sends byte-identical frames in the same order" \
  bash -c "python3 $root/test/e2e/pcap_frames.py same $work/out_lan.pcap $work/first_lan.pcap &&
           python3 $root/test/e2e/pcap_frames.py same $work/out_wan.pcap $work/first_wan.pcap"
e2e_finish
