# Network namespace topology shared by scripts/demo.sh and the e2e tests.
# Source it; it defines functions only. Everything it creates is named from
# $TOPO (a short unique tag) and removed by topo_down, which callers run from
# an EXIT trap.
#
#   ${TOPO}c (client)            ${TOPO}r (dpgate)              ${TOPO}s (server)
#   eth0 198.18.1.2/24 --veth-- lan0 [dpgate]  wan0 --veth-- eth0 198.18.2.2/24
#                                                            lo   198.19.0.10/32
# Only 198.18.0.0/15 (RFC 2544 benchmarking) addresses are used.

topo_ns() { echo "${TOPO}$1"; }

topo_quiet_ipv6() {
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

topo_up() {
  local c r s
  c=$(topo_ns c) r=$(topo_ns r) s=$(topo_ns s)
  for ns in "$c" "$r" "$s"; do
    ip netns add "$ns"
    # Name lookups inside the namespace go to its own loopback and fail at
    # once: no test host ever sends a DNS query out of the topology.
    mkdir -p "/etc/netns/$ns"
    echo "nameserver 127.0.0.1" >"/etc/netns/$ns/resolv.conf"
    topo_quiet_ipv6 "$ns"
    ip -n "$ns" link set lo up
  done
  ip -n "$r" link add lan0 type veth peer name eth0 netns "$c"
  ip -n "$r" link add wan0 type veth peer name eth0 netns "$s"
  # The hosts compute their own checksums and send MTU-sized frames: AF_PACKET
  # sees what a NIC would (no partial checksums, no GSO super-frames).
  for ns in "$c" "$s"; do
    ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$ns" link set eth0 up
  done
  for dev in lan0 wan0; do
    ip netns exec "$r" ethtool -K "$dev" rx off tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$r" link set "$dev" up
  done
  ip -n "$c" addr add 198.18.1.2/24 dev eth0
  ip -n "$c" route add default via 198.18.1.1
  ip -n "$s" addr add 198.18.2.2/24 dev eth0
  ip -n "$s" addr add 198.19.0.10/32 dev lo
  ip -n "$s" route add default via 198.18.2.1
}

topo_down() {
  local ns
  for ns in "$(topo_ns c)" "$(topo_ns r)" "$(topo_ns s)"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  sleep 0.2
  for ns in "$(topo_ns c)" "$(topo_ns r)" "$(topo_ns s)"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "/var/run/dpdk/${TOPO}"  # dpgate's EAL runtime directory (its --file-prefix)
}

# topo_start_dpgate BINARY CONFIG LOG [EAL args...]: starts dpgate inside the
# router namespace and waits until it reports it is running. Its memory
# options are the array DPGATE_MEMORY when set (a capture test's hugepages and
# shared config), else no hugepages and no shared config.
topo_start_dpgate() {
  local bin=$1 conf=$2 log=$3
  shift 3
  local memory=(--no-huge -m 512 --no-shconf)
  [ -z "${DPGATE_MEMORY+set}" ] || memory=("${DPGATE_MEMORY[@]}")
  ip netns exec "$(topo_ns r)" "$bin" "${memory[@]}" --no-pci \
    --file-prefix "${TOPO}" --log-level=lib.eal:error "$@" -- -c "$conf" >"$log" 2>&1 &
  DPGATE_PID=$!
  local i
  for i in $(seq 1 100); do
    if grep -qs "dpgate: running" "$log"; then return 0; fi
    if ! kill -0 "$DPGATE_PID" 2>/dev/null; then
      echo "dpgate exited during start-up:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "dpgate did not start within 10 s:" >&2
  cat "$log" >&2
  return 1
}

# topo_stop_dpgate: SIGTERM, wait (bounded) for the final counters.
topo_stop_dpgate() {
  [ -n "${DPGATE_PID:-}" ] || return 0
  kill -TERM "$DPGATE_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 50); do
    kill -0 "$DPGATE_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$DPGATE_PID" 2>/dev/null || true
  wait "$DPGATE_PID" 2>/dev/null || true
  DPGATE_PID=
}
