#!/usr/bin/env bash
# End to end: kube-proxy-shaped rules (test/e2e/data/kube.rules) loaded into
# dpgate balance real TCP connections from a client namespace over three
# backends, as the kernel would: random split, ClientIP affinity, NodePort
# with masquerade, REJECT for a service without endpoints; LOG rules print
# the kernel's lines (filtered by the EAL's --log-level).
# Usage: kube_test.sh BUILD_DIR WORKERS
set -euo pipefail
build=$(cd "$1" && pwd)
workers=${2:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib/topology.sh"
source "$root/test/e2e/lib.sh"
require_root_and_netns

e2e_begin "dpgkw$workers"
C=$(topo_ns c) S=$(topo_ns s) R=$(topo_ns r)
for n in 11 12 13; do
  ip -n "$S" addr add "198.18.2.$n/24" dev eth0
  ip netns exec "$S" python3 "$root/test/e2e/echo_server.py" "backend$n" "198.18.2.$n" 8080 &
done

cat >"$work/kube.conf" <<CONF
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
rules = "$root/test/e2e/data/kube.rules";
conntrack = { max_flows = 65536; };
control = { socket = "$work/dpgate.sock"; metrics = ""; };
CONF
case "$workers" in
  1) lcores=(-l 0-1) ;;
  2) lcores=(--lcores "0@0,1@0,2@1") ;;
  *) lcores=(--lcores "0@0,1@0,2@1,3@1") ;;
esac
topo_start_dpgate "$build/dpgate" "$work/kube.conf" "$work/dpgate.log" "${lcores[@]}" --log-level=dpgate.rules:info
for n in 11 12 13; do
  for _ in $(seq 1 50); do ip netns exec "$S" bash -c "exec 3<>/dev/tcp/198.18.2.$n/8080" 2>/dev/null && break; sleep 0.1; done
done

get() { ip netns exec "$C" curl -sS --max-time 10 "$@"; }

for i in $(seq 1 60); do get http://198.19.100.10/ >>"$work/clusterip.txt" || echo "failed" >>"$work/clusterip.txt"; done
check "60 connections to a ClusterIP all succeed" bash -c "[ \$(grep -c '^backend' $work/clusterip.txt) -eq 60 ]"
check "the random split reaches all three backends (>= 8 each)" bash -c "
  for n in 11 12 13; do [ \$(grep -c \"^backend\$n \" $work/clusterip.txt) -ge 8 ] || exit 1; done"
check "ClusterIP traffic keeps the client's address (no masquerade)" bash -c "
  ! grep -v ' 198.18.1.2\$' $work/clusterip.txt"

for i in $(seq 1 20); do get http://198.19.100.20/ >>"$work/sticky.txt" || echo "failed" >>"$work/sticky.txt"; done
check "ClientIP affinity keeps every connection on one backend" bash -c "
  [ \$(grep -c '^backend' $work/sticky.txt) -eq 20 ] && [ \$(cut -d' ' -f1 $work/sticky.txt | sort -u | wc -l) -eq 1 ]"

for i in $(seq 1 300); do get http://198.18.1.1:30080/ >>"$work/nodeport.txt" || echo "failed" >>"$work/nodeport.txt"; done
check "300 new connections to a NodePort on dpgate's own address are all answered" bash -c "[ \$(grep -c '^backend' $work/nodeport.txt) -eq 300 ]"
check "the NodePort split passes a chi-square test at p = 0.001 (3 backends, df 2)" python3 -c "
import collections, sys
counts = collections.Counter(line.split()[0] for line in open('$work/nodeport.txt') if line.startswith('backend'))
expected = sum(counts.values()) / 3
chi2 = sum((counts.get(b, 0) - expected) ** 2 / expected for b in ('backend11', 'backend12', 'backend13'))
print(dict(counts), 'chi2 =', round(chi2, 2))
sys.exit(0 if chi2 < 13.816 else 1)"
check "NodePort traffic is masqueraded behind dpgate's WAN address" bash -c "! grep -v ' 198.18.2.1\$' $work/nodeport.txt"

check "a service without endpoints is refused at once (REJECT)" bash -c "
  out=\$(ip netns exec $C curl -sS --max-time 5 http://198.19.100.30/ 2>&1); echo \"\$out\"
  echo \"\$out\" | grep -qE 'refused|after [0-9]{1,3} ms: Couldn.t connect'"

# The kernel's nf_log_ipv4 line for each new connection to the sticky service
# (nat PREROUTING: first packets only): IN and MAC as received, no OUT yet.
lan_mac=$(ip netns exec "$R" cat /sys/class/net/lan0/address)
client_mac=$(ip netns exec "$C" cat /sys/class/net/eth0/address)
check "a LOG rule prints one kernel-format line per new connection crossing it (20 curls, 20 lines)" bash -c "
  grep '^sticky: ' $work/dpgate.log | head -1
  [ \$(grep -cE '^sticky: IN=lan OUT= MAC=$lan_mac:$client_mac:08:00 SRC=198\.18\.1\.2 DST=198\.19\.100\.20 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=[0-9]+ DF PROTO=TCP SPT=[0-9]+ DPT=80 WINDOW=[0-9]+ RES=0x00 (AE |ECE |CWR )*SYN URGP=0 \$' $work/dpgate.log) -eq 20 ]"
check "a LOG rule at --log-level 7 is counted but not printed under --log-level=dpgate.rules:info" bash -c "
  ! grep -q '^empty-debug: ' $work/dpgate.log &&
  python3 $root/test/e2e/ctl.py $work/dpgate.sock stats | tee /dev/stderr |
    awk '/^  log: records/ {r += \$3; s += \$5; f += \$7} /^log: emitted/ {e = \$3}
         END {exit !(r >= 21 && s == 0 && f == 0 && e == r)}'"

ctl() { python3 "$root/test/e2e/ctl.py" "$work/dpgate.sock" "$@"; }
ctl save -c >"$work/saved.rules"
check "rule counters count the connections (KUBE-SVC-WEB's last rule matched)" bash -c "
  grep -E '^\[[1-9][0-9]*:[0-9]+\] -A KUBE-SVC-WEB -m comment --comment \"default/web:http -> 198.18.2.13:8080\" -j KUBE-SEP-WEB3' $work/saved.rules"
check "dpdk-telemetry.py reads /dpgate/rules and /dpgate/stats from the running daemon" bash -c "
  printf '/dpgate/rules\\n/dpgate/stats\\n' | timeout 10 dpdk-telemetry.py -f '$TOPO' >$work/telemetry.txt 2>&1
  grep -q 'generation [0-9]*: [0-9]* rules in [0-9]* chains' $work/telemetry.txt &&
    grep -q 'table nat: [0-9]* rules' $work/telemetry.txt && grep -q 'worker 0' $work/telemetry.txt" ||
  cat "$work/telemetry.txt"
check "the saved rules are what the real iptables-save prints for the file" bash -c "
  ns=dpgk$$o; ip netns add \$ns; trap 'ip netns del \$ns' EXIT
  ip netns exec \$ns iptables-restore < $root/test/e2e/data/kube.rules
  diff <(ip netns exec \$ns iptables-save | grep -v '^#') <(python3 $root/test/e2e/ctl.py $work/dpgate.sock save)"

ctlbin=("$build/dpgatectl" -s "$work/dpgate.sock")
check "dpgatectl conntrack -L shows DNATed flows in conntrack's format" bash -c "
  ${ctlbin[*]} conntrack -L -p tcp | grep -E '^tcp +6 [0-9]+ [A-Z_]+ src=198.18.1.2 dst=198.19.100.10 sport=[0-9]+ dport=80 .*src=198.18.2.1[123] dst=198.18.1.2 sport=8080'"
check "dpgatectl conntrack -C counts the flows" bash -c "[ \$(${ctlbin[*]} conntrack -C) -ge 90 ]"
before=$("${ctlbin[@]}" conntrack -L --dst-nat 198.18.2.11 | wc -l)
check "conntrack -D --dst-nat removes one endpoint's flows, as kube-proxy does" bash -c "
  [ $before -gt 0 ] && ${ctlbin[*]} conntrack -D --dst-nat 198.18.2.11 | grep -x '$before flow entries have been deleted.' &&
  [ \$(${ctlbin[*]} conntrack -L --dst-nat 198.18.2.11 | wc -l) -eq 0 ]"
check "dpgatectl trace walks a packet through the running rules to a DNAT" bash -c "
  ${ctlbin[*]} trace 'tcp 198.18.1.2:40000 -> 198.18.1.1:30080 in lan' | tee /dev/stderr | grep -E 'DNAT.*198.18.2.1[123]:8080' &&
  ${ctlbin[*]} trace 'tcp 198.18.1.2:40000 -> 198.18.1.1:30080 in lan' | grep -q 'same result as the interpreter'"
check "dpgatectl list shows a chain's rules with counters, as iptables -L -v -n" bash -c "
  ${ctlbin[*]} list -t nat KUBE-SVC-WEB -v -n | tee /dev/stderr | grep -E '^ +[1-9][0-9]* +[0-9]+[KMG]? KUBE-SEP-WEB3 +all +-- +\\* +\\* +0.0.0.0/0 +0.0.0.0/0 '"
check "a malformed conntrack request is an error, not a crash" bash -c "! ${ctlbin[*]} conntrack -L --dst-nat nowhere"

# A client port reused towards a second service with the same backend (the
# sticky service's and the ClusterIP's endpoints overlap): the reply tuple is
# taken, so the null binding moves the client's port, as the kernel does. The
# replies then go to the client's address, which no worker can steer by port:
# with several workers they need redirect stubs like any DNATed flow.
reuse() {
  local port=$1 url=$2 out
  for _ in 1 2 3; do
    out=$(ip netns exec "$C" curl -sS --max-time 5 --local-port "$port" "$url" 2>&1) && { echo "${out%% *}"; return; }
    case "$out" in *"bind failed"*) sleep 0.2 ;; *) break ;; esac
  done
  # A port the client itself keeps in TIME_WAIT cannot be bound: not tested.
  case "$out" in *"bind failed"*) echo busy ;; *) echo "failed:$(echo "$out" | head -1 | cut -c1-60 | tr ' ' _)" ;; esac
}
for port in $(seq 41000 7 41203); do
  echo "$port $(reuse "$port" http://198.19.100.20/) $(reuse "$port" http://198.19.100.10/)" >>"$work/reuse.txt"
done
check "a client port reused towards a second service on the same backend connects (30 ports, the null binding moves it)" bash -c "
  cat $work/reuse.txt | tr '\n' ';'; echo
  ! grep -q failed $work/reuse.txt && [ \$(grep -vc busy $work/reuse.txt) -ge 20 ] &&
    [ \$(awk '\$2 == \$3' $work/reuse.txt | wc -l) -ge 3 ]"

# Hot reload under traffic: the rules plus 2000 more services, applied 10
# times while a client keeps opening connections; none may fail.
python3 - "$root/test/e2e/data/kube.rules" >"$work/big.rules" <<'PY'
import sys
text = open(sys.argv[1]).read()
extra = "".join(f"-A KUBE-SERVICES -d 198.19.{200 + i // 250}.{i % 250 + 1}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-WEB\n"
                for i in range(2000))
at = text.index("-A KUBE-SERVICES -m comment")
print(text[:at] + extra + text[at:], end="")
PY
( for i in $(seq 1 80); do ip netns exec "$C" curl -sS --max-time 5 http://198.19.100.10/ >/dev/null 2>&1 || echo fail; done ) >"$work/during.txt" &
loader=$!
for i in $(seq 1 10); do "${ctlbin[@]}" apply "$work/big.rules" >>"$work/apply.txt" 2>&1 || echo "apply failed" >>"$work/apply.txt"; done
wait $loader
cat "$work/apply.txt" | tail -2
check "ten applies of 2034 rules succeeded, each a new generation" bash -c "[ \$(grep -c '^generation' $work/apply.txt) -eq 10 ]"
check "no connection failed while the rules were reloaded" bash -c "[ ! -s $work/during.txt ]"
check "the new services answer after the reload" bash -c "ip netns exec $C curl -sS --max-time 5 http://198.19.207.250/ | grep -q '^backend'"
check "a rules file with a mistake is refused with its position; the running rules stay" bash -c "
  printf '*filter\n-A FORWARD -p tcp --dport 70000 -j DROP\nCOMMIT\n' > $work/bad.rules
  ! ${ctlbin[*]} apply $work/bad.rules 2>$work/bad.txt && grep -q 'bad.rules:2:' $work/bad.txt &&
  ${ctlbin[*]} generation | grep -qx 11"

topo_stop_dpgate
log="$work/dpgate.log"
cat "$log"
check "no packet or redirect stub was lost to a full ring, conntrack table or NAT range" bash -c "! grep -qE 'handover_full|conntrack_full|conntrack_clash|nat_no_port|redirects_lost [1-9]|clashed [1-9]|departures_lost [1-9]' $log"
check "nothing in the namespaces tried to leave for an address outside the test (no_route)" bash -c "! grep -q 'no_route' $log"
if [ "$workers" -gt 1 ]; then
  check "replies reached their owner across workers (handovers happened)" bash -c "grep -qE 'handed_over [1-9]' $log"
fi
e2e_finish
