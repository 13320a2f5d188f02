#!/usr/bin/env bash
# End to end: a long-lived TCP stream through DNAT keeps flowing while 12 000
# other flows are created, fill a small conntrack table (4096 flows) and
# expire; the flood is early-dropped and counted, established connections are
# never evicted, and new connections work again afterwards.
# Usage: flood_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns

e2e_begin "dpgf"
C=$(topo_ns c) S=$(topo_ns s)
ip -n "$S" addr add 198.18.2.11/24 dev eth0
head -c 3000000 /dev/urandom >"$work/blob"
ip netns exec "$S" python3 "$root/test/e2e/file_server.py" 198.18.2.11 8081 "$work" &
ip netns exec "$S" python3 "$root/test/e2e/echo_server.py" web 198.18.2.11 8080 &
ip netns exec "$S" python3 "$root/test/diff/udp_echo.py" dns 198.18.2.11 53 &

cat >"$work/flood.rules" <<'RULES'
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 198.19.60.1/32 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 198.18.2.11:8081
-A PREROUTING -d 198.19.60.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.11:8080
-A PREROUTING -d 198.19.60.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 198.18.2.11:53
COMMIT
*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT
COMMIT
RULES
cat >"$work/flood.conf" <<CONF
workers = 1;
idle_sleep_us = 20;
rx_descriptors = 512;
tx_descriptors = 512;
mbuf_pool_size = 8191;
ports = (
  { name = "lan"; device = "net_af_packet0,iface=lan0,qpairs=1"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_af_packet1,iface=wan0,qpairs=1"; addresses = [ "198.18.2.1/24" ]; }
);
rules = "$work/flood.rules";
conntrack = { max_flows = 4096; timeouts = { udp = 8; udp_stream = 8; }; };
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
topo_start_dpgate "$build/dpgate" "$work/flood.conf" "$work/dpgate.log" -l 0-1
for port in 8080 8081; do
  for _ in $(seq 1 50); do ip netns exec "$S" bash -c "exec 3<>/dev/tcp/198.18.2.11/$port" 2>/dev/null && break; sleep 0.1; done
done

ip netns exec "$C" curl -sS --max-time 90 --limit-rate 150k -o "$work/got" http://198.19.60.1:8081/blob >"$work/download.txt" 2>&1 &
download=$!
sleep 1
# 12 000 UDP flows from distinct source ports, in bursts, over about 3 s.
ip netns exec "$C" python3 - <<'PY'
import socket, time
for burst in range(24):
    socks = []
    for _ in range(500):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"flood", ("198.19.60.1", 53))
        socks.append(s)
    for s in socks:
        s.close()
    time.sleep(0.1)
PY
python3 "$root/test/e2e/ctl.py" "$work/dpgate.sock" stats >"$work/stats-flood.txt"
cat "$work/stats-flood.txt" | grep conntrack
wait "$download" || true
check "the long DNATed download kept flowing through the flood and arrived intact" cmp "$work/blob" "$work/got"
check "the flood filled the table and non-assured flows were early-dropped (counted)" bash -c "
  grep -E 'conntrack: flows [0-9]+/4096 .*early_dropped [1-9]' $work/stats-flood.txt"
sleep 9  # the flood's flows time out (udp = 8 s)
check "after the flood expired, new connections work" bash -c "ip netns exec $C curl -sS --max-time 5 http://198.19.60.1/ | grep -q '^web'"
python3 "$root/test/e2e/ctl.py" "$work/dpgate.sock" stats >"$work/stats-after.txt"
grep conntrack "$work/stats-after.txt"
check "expired flows were reclaimed (the table is no longer full)" bash -c "
  [ \$(sed -n 's/.*conntrack: flows \([0-9]*\)\/.*/\1/p' $work/stats-after.txt) -lt 1000 ]"
topo_stop_dpgate
e2e_finish
