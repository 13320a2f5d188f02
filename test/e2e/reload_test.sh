#!/usr/bin/env bash
# Reload without loss: a kube-proxy rule set of 10 000 services (plus the test's
# own services) is applied 20 times over the control socket while traffic
# crosses dpgate: a ping stream loses nothing, a long download through a
# DNATed service keeps its backend and arrives intact, new connections keep
# succeeding. Apply times are reported.
# Usage: reload_test.sh BUILD_DIR [SERVICES] [APPLIES]
set -euo pipefail
build=$(cd "$1" && pwd)
services=${2:-10000}
applies=${3:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns

e2e_begin "dpgr"
C=$(topo_ns c) S=$(topo_ns s)
for n in 11 12; do
  ip -n "$S" addr add "198.18.2.$n/24" dev eth0
  ip netns exec "$S" python3 "$root/test/e2e/echo_server.py" "backend$n" "198.18.2.$n" 8080 &
done
head -c 4000000 /dev/urandom >"$work/blob"
ip netns exec "$S" python3 "$root/test/e2e/file_server.py" 198.18.2.11 8081 "$work" &

# The generated services, plus ours: a two-endpoint web service and a file service.
python3 "$root/scripts/kube-rules.py" "$services" 3 >"$work/generated.rules"
python3 - "$work/generated.rules" >"$work/a.rules" <<'PY'
import sys
text = open(sys.argv[1]).read()
chains = ":KUBE-SVC-TWEB - [0:0]\n:KUBE-SEP-TWEB1 - [0:0]\n:KUBE-SEP-TWEB2 - [0:0]\n:KUBE-SEP-TFILE - [0:0]\n"
rules = ("-A KUBE-SERVICES -d 198.19.100.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-TWEB\n"
         "-A KUBE-SERVICES -d 198.19.100.11/32 -p tcp -m tcp --dport 8081 -j KUBE-SEP-TFILE\n"
         "-A KUBE-SVC-TWEB -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-TWEB1\n"
         "-A KUBE-SVC-TWEB -j KUBE-SEP-TWEB2\n"
         "-A KUBE-SEP-TWEB1 -p tcp -m tcp -j DNAT --to-destination 198.18.2.11:8080\n"
         "-A KUBE-SEP-TWEB2 -p tcp -m tcp -j DNAT --to-destination 198.18.2.12:8080\n"
         "-A KUBE-SEP-TFILE -p tcp -m tcp -j DNAT --to-destination 198.18.2.11:8081\n")
nat = text.index("*nat\n") + len("*nat\n")
text = text[:nat] + chains + text[nat:]
at = text.index("-A PREROUTING -j KUBE-SERVICES\n")
print(text[:at] + rules + text[at:], end="")
PY
# Variant b moves the web service to one endpoint: consecutive applies differ.
sed 's/^-A KUBE-SVC-TWEB -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-TWEB1$/-A KUBE-SVC-TWEB -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-TWEB2/' \
  "$work/a.rules" >"$work/b.rules"
check "the real iptables-restore accepts the rule set" bash -c "
  ns=dpgr$$o; ip netns add \$ns; trap 'ip netns del \$ns' EXIT; ip netns exec \$ns iptables-restore --test < $work/a.rules"

cat >"$work/reload.conf" <<CONF
workers = 1;
idle_sleep_us = 20;
rx_descriptors = 512;
tx_descriptors = 512;
mbuf_pool_size = 8191;
ports = (
  { name = "lan"; device = "net_af_packet0,iface=lan0,qpairs=1"; addresses = [ "198.18.1.1/24" ]; },
  { name = "wan"; device = "net_af_packet1,iface=wan0,qpairs=1"; addresses = [ "198.18.2.1/24" ]; }
);
rules = "$work/a.rules";
conntrack = { max_flows = 65536; };
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
topo_start_dpgate "$build/dpgate" "$work/reload.conf" "$work/dpgate.log" -l 0-1
for n in 11 12; do
  for _ in $(seq 1 50); do ip netns exec "$S" bash -c "exec 3<>/dev/tcp/198.18.2.$n/8080" 2>/dev/null && break; sleep 0.1; done
done
for _ in $(seq 1 50); do ip netns exec "$S" bash -c "exec 3<>/dev/tcp/198.18.2.11/8081" 2>/dev/null && break; sleep 0.1; done
ctl=("$build/dpgatectl" -s "$work/dpgate.sock")
check "the service answers before the reloads" bash -c "ip netns exec $C curl -sS --max-time 5 http://198.19.100.10/ | grep -q '^backend'"

# Traffic that spans all the reloads.
ip netns exec "$C" curl -sS --max-time 120 --limit-rate 200k -o "$work/got" http://198.19.100.11:8081/blob \
  >"$work/download.txt" 2>&1 &
download=$!
ip netns exec "$C" ping -i 0.02 -c 100000 198.18.2.2 >"$work/ping.txt" 2>&1 &
pinger=$!
( for i in $(seq 1 1000); do
    [ -f "$work/stop" ] && break
    ip netns exec "$C" curl -sS --max-time 5 http://198.19.100.10/ >/dev/null 2>&1 && echo ok || echo fail
  done ) >"$work/connections.txt" &
connector=$!

for i in $(seq 1 "$applies"); do
  file="$work/a.rules"; [ $((i % 2)) -eq 0 ] && file="$work/b.rules"
  "${ctl[@]}" apply "$file" >>"$work/apply.txt" 2>&1 || echo "apply failed" >>"$work/apply.txt"
done
touch "$work/stop"
wait "$connector"
kill -INT "$pinger" 2>/dev/null || true
wait "$pinger" || true
wait "$download" || true

rules_count=$(head -1 "$work/apply.txt" | sed -n 's/.*: \([0-9]*\) rules.*/\1/p')
echo "applied $applies times, $rules_count rules each; apply times (parse + compile, ms):"
sed -n 's/.*parse \([0-9.]*\) ms, compile \([0-9.]*\) ms.*/\1 \2/p' "$work/apply.txt" |
  awk '{t=$1+$2; s+=t; if(min==""||t<min)min=t; if(t>max)max=t} END {printf "  min %.0f, mean %.0f, max %.0f ms\n", min, s/NR, max}'
tail -4 "$work/ping.txt"
check "every apply succeeded and made a new generation" bash -c "[ \$(grep -c '^generation' $work/apply.txt) -eq $applies ]"
# ping stops on SIGINT without waiting for the reply to its last request, so
# that one request may be in flight; every earlier one must have its answer.
check "the ping stream across the reloads lost no packet" awk '
  /icmp_seq=/ { split($0, f, "icmp_seq="); split(f[2], g, " "); got[g[1]] = 1 }
  / packets transmitted/ { sent = $1 }
  END {
    if (sent < 2) { print "  no ping statistics"; exit 1 }
    for (i = 1; i < sent; i++) if (!(i in got)) { print "  icmp_seq=" i " unanswered"; lost++ }
    exit lost > 0
  }' "$work/ping.txt"
check "new connections during the reloads all succeeded" bash -c "
  [ \$(grep -c ok $work/connections.txt) -ge 1 ] && ! grep -q fail $work/connections.txt"
check "the download through the DNATed service kept its backend and arrived intact" cmp "$work/blob" "$work/got"
topo_stop_dpgate
cat "$work/dpgate.log" | tail -8
e2e_finish
