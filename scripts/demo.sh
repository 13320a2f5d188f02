#!/usr/bin/env bash
# The demo gateway: dpgate routes between a client and a server namespace on
# virtual ports (AF_PACKET over veth), and shows real traffic crossing it.
# Usage: scripts/demo.sh        (as root; removes everything it made on exit)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build dpgate >/dev/null

source scripts/lib/topology.sh
TOPO="dpgdemo$$"
work=$(mktemp -d)
cleanup() {
  echo
  echo "== cleaning up: stopping dpgate, removing namespaces"
  topo_stop_dpgate
  [ -f "$work/dpgate.log" ] && sed -n '/final counters/,$p' "$work/dpgate.log"
  topo_down
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "topology: client 198.18.1.2 -- [lan0 dpgate wan0] -- server 198.18.2.2 (+198.19.0.10 behind a static route)"
topo_up
C=$(topo_ns c) S=$(topo_ns s)

say "starting dpgate with conf/demo.conf"
topo_start_dpgate "$root/build/dpgate" "$root/conf/demo.conf" "$work/dpgate.log" -l 0-1
grep '^dpgate:' "$work/dpgate.log"

echo "hello from the server behind dpgate" >"$work/index.html"
head -c 4194304 /dev/urandom >"$work/4MiB.bin"
ip netns exec "$S" python3 -m http.server 8080 --bind 0.0.0.0 --directory "$work" >/dev/null 2>&1 &
for _ in $(seq 1 50); do ip netns exec "$S" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done

say "ping dpgate itself, then the server through it"
run ip netns exec "$C" ping -c 2 -i 0.3 198.18.1.1
run ip netns exec "$C" ping -c 3 -i 0.3 198.18.2.2

say "ping with TTL 1: dpgate answers Time Exceeded"
run ip netns exec "$C" ping -c 1 -t 1 -W 2 198.18.2.2 || true

say "HTTP through dpgate (on-link and via the static route)"
run ip netns exec "$C" curl -sS --max-time 10 http://198.18.2.2:8080/index.html
run ip netns exec "$C" curl -sS --max-time 20 -o /dev/null -w 'fetched %{size_download} bytes at %{speed_download} B/s\n' \
  http://198.19.0.10:8080/4MiB.bin

say "ARP: what the client and the server learned about dpgate"
run ip -n "$C" neigh show
run ip -n "$S" neigh show

say "dpgate's counters (SIGUSR1)"
kill -USR1 "$DPGATE_PID"
sleep 0.3
sed -n '/^port /,$p' "$work/dpgate.log" | tail -n 8
