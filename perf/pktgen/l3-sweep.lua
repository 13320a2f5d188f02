-- Pktgen-DPDK: plain L3 forwarding through dpgate, a sweep over frame sizes.
-- Port 0 sends to dpgate's "lan" port; port 1 receives from dpgate's "wan" port.
-- Run: pktgen -l 0-4 -n 4 -a PCI0 -a PCI1 -- -P -m "[1:2].0,[3:4].1" -f perf/pktgen/l3-sweep.lua
-- Edit the four lines below to match your cabling and dpgate.conf.
local DPGATE_LAN_MAC = "02:00:00:00:00:01"   -- dpgate's lan port (its start banner prints it)
local SRC_NET        = "198.18.0.2/24"       -- a source on dpgate's lan network
local DST_FIRST      = "198.18.1.1"          -- destinations routed by dpgate out of wan
local DST_LAST       = "198.18.1.254"
local SIZES          = { 64, 128, 256, 512, 1024, 1518 }
local SECONDS        = 10

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

pktgen.set_mac("0", "dst", DPGATE_LAN_MAC)
pktgen.set_ipaddr("0", "src", SRC_NET)
pktgen.set_proto("0", "udp")
pktgen.range.dst_mac("0", "start", DPGATE_LAN_MAC)
pktgen.range.dst_ip("0", "start", DST_FIRST)
pktgen.range.dst_ip("0", "inc", "0.0.0.1")
pktgen.range.dst_ip("0", "min", DST_FIRST)
pktgen.range.dst_ip("0", "max", DST_LAST)
pktgen.range.src_port("0", "start", 1024)
pktgen.range.src_port("0", "inc", 1)
pktgen.range.src_port("0", "min", 1024)
pktgen.range.src_port("0", "max", 5119)
pktgen.range.dst_port("0", "start", 5001)
pktgen.range.dst_port("0", "inc", 0)
pktgen.range.dst_port("0", "min", 5001)
pktgen.range.dst_port("0", "max", 5001)
pktgen.set_range("0", "on")
pktgen.set("0", "rate", 100)

printf("%6s %14s %14s %8s\n", "size", "tx pps", "rx pps", "loss %")
for _, size in ipairs(SIZES) do
  pktgen.range.pkt_size("0", "start", size)
  pktgen.range.pkt_size("0", "inc", 0)
  pktgen.range.pkt_size("0", "min", size)
  pktgen.range.pkt_size("0", "max", size)
  pktgen.clr()
  pktgen.start("0")
  pktgen.delay(SECONDS * 1000)
  pktgen.stop("0")
  pktgen.delay(500)   -- let the last packets drain through dpgate
  local tx = pktgen.portStats("0", "port")[0].opackets
  local rx = pktgen.portStats("1", "port")[1].ipackets
  printf("%6d %14.0f %14.0f %8.3f\n", size, tx / SECONDS, rx / SECONDS, tx > 0 and 100 * (tx - rx) / tx or 0)
end
