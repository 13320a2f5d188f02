-- Pktgen-DPDK: NodePort-style load through dpgate, many clients to one
-- service address (a VIP or dpgate's own address) and port. Each source
-- address/port pair is one connection-like flow; TCP SYNs make every new
-- pair a new connection for dpgate's conntrack (with --flows in the range
-- below); set PROTO = "udp" for established-style UDP flows.
-- Port 0 is the client side (dpgate "lan"), port 1 the backend side ("wan"):
-- count what dpgate DNATs to the backends on port 1.
-- Run: pktgen -l 0-4 -n 4 -a PCI0 -a PCI1 -- -P -m "[1:2].0,[3:4].1" -f perf/pktgen/nodeport.lua
local DPGATE_LAN_MAC = "02:00:00:00:00:01"
local SERVICE_IP     = "198.19.0.1"      -- the VIP / node address in dpgate's rules
local SERVICE_PORT   = 30080             -- the NodePort (or the ClusterIP port)
local CLIENT_FIRST   = "198.18.0.2"
local CLIENT_LAST    = "198.18.0.251"    -- 250 clients x 4096 source ports = 1 024 000 flows
local PROTO          = "tcp"
local SIZE           = 64
local SECONDS        = 10

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

pktgen.set_proto("0", PROTO)
pktgen.range.dst_mac("0", "start", DPGATE_LAN_MAC)
pktgen.range.dst_ip("0", "start", SERVICE_IP)
pktgen.range.dst_ip("0", "inc", "0.0.0.0")
pktgen.range.dst_ip("0", "min", SERVICE_IP)
pktgen.range.dst_ip("0", "max", SERVICE_IP)
pktgen.range.src_ip("0", "start", CLIENT_FIRST)
pktgen.range.src_ip("0", "inc", "0.0.0.1")
pktgen.range.src_ip("0", "min", CLIENT_FIRST)
pktgen.range.src_ip("0", "max", CLIENT_LAST)
pktgen.range.src_port("0", "start", 1024)
pktgen.range.src_port("0", "inc", 1)
pktgen.range.src_port("0", "min", 1024)
pktgen.range.src_port("0", "max", 5119)
pktgen.range.dst_port("0", "start", SERVICE_PORT)
pktgen.range.dst_port("0", "inc", 0)
pktgen.range.dst_port("0", "min", SERVICE_PORT)
pktgen.range.dst_port("0", "max", SERVICE_PORT)
pktgen.range.pkt_size("0", "start", SIZE)
pktgen.range.pkt_size("0", "inc", 0)
pktgen.range.pkt_size("0", "min", SIZE)
pktgen.range.pkt_size("0", "max", SIZE)
pktgen.set_range("0", "on")
pktgen.set("0", "rate", 100)

pktgen.clr()
pktgen.start("0")
pktgen.delay(SECONDS * 1000)
pktgen.stop("0")
pktgen.delay(500)
local tx = pktgen.portStats("0", "port")[0].opackets
local rx = pktgen.portStats("1", "port")[1].ipackets
printf("sent %.0f pps, reached the backends %.0f pps, loss %.3f %%\n",
       tx / SECONDS, rx / SECONDS, tx > 0 and 100 * (tx - rx) / tx or 0)
