#!/usr/bin/env bash
# End to end: dpgate routes between two namespaces on AF_PACKET ports.
# Usage: route_test.sh BUILD_DIR WORKERS
# Checks ping through and to dpgate, ARP both ways, TTL expiry, a 1 MiB HTTP
# transfer (content compared), a static route, and the final counters.
set -euo pipefail
build=$(cd "$1" && pwd)
workers=${2:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns

e2e_begin "dpgew$workers"
C=$(topo_ns c) S=$(topo_ns s) R=$(topo_ns r)

cat >"$work/e2e.conf" <<CONF
workers = $workers;
idle_sleep_us = 20;
rx_descriptors = 256;
tx_descriptors = 256;
mbuf_pool_size = 4095;
ports = (
  { name = "lan"; device = "net_af_packet0,iface=lan0,qpairs=$workers"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_af_packet1,iface=wan0,qpairs=$workers"; addresses = [ "198.18.2.1/24" ]; }
);
routes = ( { prefix = "198.19.0.0/16"; gateway = "198.18.2.2"; port = "wan"; } );
control = { socket = "$work/dpgate.sock"; metrics = "127.0.0.1:9469"; };
CONF
if [ "$workers" -eq 1 ]; then lcores=(-l 0-1); else lcores=(--lcores "0@0,1@0,2@1"); fi
topo_start_dpgate "$build/dpgate" "$work/e2e.conf" "$work/dpgate.log" "${lcores[@]}"

head -c 1048576 /dev/urandom >"$work/blob"
ip netns exec "$S" python3 -m http.server 8080 --bind 0.0.0.0 --directory "$work" >/dev/null 2>&1 &
for i in $(seq 1 50); do ip netns exec "$S" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done

lan_mac=$(ip netns exec "$R" cat /sys/class/net/lan0/address)
wan_mac=$(ip netns exec "$R" cat /sys/class/net/wan0/address)

check "the client pings dpgate's own address" ip netns exec "$C" ping -c 2 -i 0.2 -W 2 198.18.1.1
check "the client learned dpgate's MAC by ARP" bash -c "ip -n $C neigh show 198.18.1.1 | grep -q '$lan_mac'"
check "the client pings the server through dpgate" ip netns exec "$C" ping -c 3 -i 0.2 -W 2 198.18.2.2
check "the server learned dpgate's MAC from its ARP request" bash -c "ip -n $S neigh show 198.18.2.1 | grep -q '$wan_mac'"
check "the server pings the client back" ip netns exec "$S" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "ping with TTL 1 gets Time Exceeded from dpgate" \
  bash -c "ip netns exec $C ping -c 1 -t 1 -W 2 198.18.2.2 | grep -E 'From 198.18.1.1.*Time to live exceeded'"
check "an unrouted destination gets Network Unreachable" \
  bash -c "ip netns exec $C ping -c 1 -W 2 198.18.77.1 | grep -E 'From 198.18.1.1.*(Destination Net Unreachable)'"
check "a 1 MiB HTTP transfer arrives intact" \
  bash -c "ip netns exec $C curl -sS --max-time 20 -o $work/got http://198.18.2.2:8080/blob && cmp $work/blob $work/got"
check "a static route through a gateway carries TCP" \
  bash -c "ip netns exec $C curl -sS --max-time 10 -o /dev/null -w '%{http_code}' http://198.19.0.10:8080/blob | grep -q 200"
check "eight parallel transfers all arrive intact" bash -c "
  for i in \$(seq 1 8); do ip netns exec $C curl -sS --max-time 30 -o $work/got\$i http://198.18.2.2:8080/blob & done; wait
  for i in \$(seq 1 8); do cmp $work/blob $work/got\$i || exit 1; done"

check "the control socket is private (mode 0600)" test "$(stat -c %a "$work/dpgate.sock")" = 600
check "the control socket answers 'stats' with the live counters" bash -c "
  python3 $root/test/e2e/ctl.py $work/dpgate.sock stats | grep -E '^worker 0 .*forwarded [1-9]'"
check "the control socket answers 'route' like ip route" bash -c "
  python3 $root/test/e2e/ctl.py $work/dpgate.sock route | grep -x '198.19.0.0/16 via 198.18.2.2 dev wan'"
check "the control socket answers 'neigh' with the learned neighbours" bash -c "
  python3 $root/test/e2e/ctl.py $work/dpgate.sock neigh | grep -E '^198.18.2.2 dev wan lladdr .* (REACHABLE|STALE)'"
check "an unknown command is an error reply, and dpgate keeps serving" bash -c "
  ! python3 $root/test/e2e/ctl.py $work/dpgate.sock frobnicate && python3 $root/test/e2e/ctl.py $work/dpgate.sock stats >/dev/null"
check "Prometheus metrics are served on the router's loopback" bash -c "
  ip netns exec $R curl -sS --max-time 5 http://127.0.0.1:9469/metrics | grep -E '^dpgate_forwarded_packets_total\{worker=\"0\"\} [1-9]'"

check "malformed control requests get error replies and dpgate keeps forwarding" bash -c "
  python3 - $work/dpgate.sock <<'PY'
import os, random, socket, sys
rng = random.Random(5)
cases = [b'\\n', b'stats body=x\\n', b'apply body=99999999999\\n', b'A' * 9000, b'stats\\x00\\x01\\n',
         b'conntrack -L -p\\n', b'save -t nosuch\\n', b'apply --bogus body=3\\nabc', b'list -t nat NOCHAIN\\n']
cases += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) + b'\\n' for _ in range(40)]
errors = 0
for c in cases:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(sys.argv[1])
    s.sendall(c)
    s.shutdown(socket.SHUT_WR)
    data = b''
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    errors += data.startswith(b'error ')
print(errors, 'of', len(cases), 'answered with an error')
sys.exit(0 if errors >= len(cases) - 2 else 1)
PY
  ip netns exec $C ping -c 2 -i 0.2 -W 2 198.18.2.2 >/dev/null"
check "a client that is not root cannot use the control socket" bash -c "
  ! setpriv --reuid=65534 --regid=65534 --clear-groups python3 $root/test/e2e/ctl.py $work/dpgate.sock stats 2>/dev/null"
check "dpgatectl stats, metrics and zero answer" bash -c "
  $build/dpgatectl -s $work/dpgate.sock stats | grep -q '^worker 0' &&
  $build/dpgatectl -s $work/dpgate.sock metrics | grep -q '^dpgate_drops_total' &&
  $build/dpgatectl -s $work/dpgate.sock zero"

# SNAT to a single port, as the kernel does it: every connection takes
# 198.18.2.1:40001 while its reply tuple stays unique (one per destination
# port here), on whichever worker it lands; with two workers the port lies
# in worker 1's slice, and a connection worker 0 takes has its replies
# brought back by stubs.
cat >"$work/snat.rules" <<'RULES'
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan -p tcp -m tcp --dport 9001:9008 -j SNAT --to-source 198.18.2.1:40001
COMMIT
RULES
ip netns exec "$S" python3 -c '
import socket, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    while True:
        c, peer = s.accept()
        c.sendall(("%s:%d\n" % peer).encode())
        c.close()
for p in range(9001, 9009):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
' >/dev/null 2>&1 &
for i in $(seq 1 50); do ip netns exec "$S" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9008' 2>/dev/null && break; sleep 0.1; done
check "SNAT rules to a single port load" "$build/dpgatectl" -s "$work/dpgate.sock" apply "$work/snat.rules"
check "eight connections to eight server ports all leave from 198.18.2.1:40001" bash -c "
  for p in \$(seq 9001 9008); do
    seen=\$(ip netns exec $C timeout 5 bash -c \"exec 3<>/dev/tcp/198.18.2.2/\$p && head -1 <&3\") || exit 1
    [ \"\$seen\" = 198.18.2.1:40001 ] || { echo \"port \$p: server saw \$seen\"; exit 1; }
  done"
check "no connection lacked a port" bash -c "
  ! $build/dpgatectl -s $work/dpgate.sock stats | grep -E 'nat_no_port [1-9]'"

topo_stop_dpgate
log="$work/dpgate.log"
cat "$log"
check "dpgate stopped cleanly and printed final counters" grep -q "final counters" "$log"
check "dpgate forwarded the traffic (> 1500 packets)" test "$(counter "$log" forwarded)" -gt 1500
check "dpgate answered ARP" test "$(counter "$log" arp_replies)" -ge 1
check "dpgate asked by ARP" test "$(counter "$log" arp_requests)" -ge 1
check "dpgate sent the ICMP errors" test "$(counter "$log" icmp_errors)" -ge 2
check "nothing was lost to full TX queues or a lack of mbufs" bash -c "! grep -qE 'tx_full|no_mbuf' $log"
if [ "$workers" -gt 1 ]; then
  check "every worker forwarded packets" bash -c "[ \$(grep -cE '^worker .*forwarded [1-9]' $log) -eq $workers ]"
fi
e2e_finish
