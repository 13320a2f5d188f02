// The whole worker pipeline in one process: frames built by the test enter
// through net_ring ports, run through the real Runtime and worker_poll(), and
// the bytes that come out are checked, with the counters.
#include <catch2/catch.hpp>

#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "dpgate/control/runtime.hpp"
#include "dpgate/dataplane/nat.hpp"
#include "dpgate/net/builder.hpp"
#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"

using namespace dpgate;
using net::MacAddr;
using net::PacketBuilder;
using Frame = std::vector<uint8_t>;

namespace {

const MacAddr kClientMac{{0x02, 0xcc, 0, 0, 0, 0x02}};
const MacAddr kServerMac{{0x02, 0x55, 0, 0, 0, 0x02}};
const MacAddr kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
constexpr uint16_t kLan = 0, kWan = 1;

uint32_t addr(const char* s) { return *net::parse_ipv4(s); }

// Two net_ring ports, "lan" 198.18.1.1/24 and "wan" 198.18.2.1/24, with
// `queues` RX/TX ring pairs each, and a Runtime over them.
class RingRouter {
 public:
  explicit RingRouter(const std::string& extra_config = "", uint16_t queues = 1) {
    static int serial = 0;
    const std::string id = std::to_string(serial++);
    for (uint16_t p = 0; p < 2; ++p) {
      names_[p] = "t" + id + (p == kLan ? "lan" : "wan");
      for (uint16_t q = 0; q < queues; ++q) {
        rx_[p].push_back(rte_ring_create((names_[p] + "rx" + std::to_string(q)).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ));
        tx_[p].push_back(rte_ring_create((names_[p] + "tx" + std::to_string(q)).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ));
      }
      // The ethdev is named "net_ring_" + name.
      REQUIRE(rte_eth_from_rings(names_[p].c_str(), rx_[p].data(), queues, tx_[p].data(), queues, 0) >= 0);
    }
    const std::string text = "workers = " + std::to_string(queues) +
        ";\nrx_descriptors = 64;\ntx_descriptors = 64;\nmbuf_pool_size = 2047;\nmbuf_cache_size = 0;\nports = (\n"
        "  { name = \"lan\"; device = \"net_ring_" + names_[kLan] + "\"; addresses = [ \"198.18.1.1/24\" ]; },\n"
        "  { name = \"wan\"; device = \"net_ring_" + names_[kWan] + "\"; addresses = [ \"198.18.2.1/24\" ]; mtu = 1400; }\n);\n"
        "routes = ( { prefix = \"198.19.0.0/16\"; gateway = \"198.18.2.2\"; port = \"wan\"; } );\n" + extra_config;
    auto cfg = control::load_config_text(text, "pipeline.conf");
    if (auto* e = std::get_if<control::ConfigError>(&cfg)) FAIL(e->to_string());
    auto rt = control::Runtime::create(std::get<control::Config>(cfg));
    if (auto* e = std::get_if<std::string>(&rt)) FAIL(*e);
    runtime_ = std::move(std::get<std::unique_ptr<control::Runtime>>(rt));
  }

  ~RingRouter() {
    runtime_.reset();
    for (uint16_t p = 0; p < 2; ++p) {
      for (auto* ring : rx_[p]) rte_ring_free(ring);
      for (auto* ring : tx_[p]) rte_ring_free(ring);
    }
  }

  MacAddr mac(uint16_t port) { return runtime_->router().ports[port].mac; }
  dataplane::Worker& worker(uint16_t q = 0) { return *runtime_->workers()[q]; }
  control::Runtime& runtime() { return *runtime_; }

  // Puts a frame on port's RX queue, then runs one poll of that queue's worker
  // and one control-thread service round.
  void receive(uint16_t port, const Frame& f, uint16_t queue = 0) {
    put(port, f, queue);
    poll(queue);
  }

  // Puts a frame on port's RX queue without polling.
  void put(uint16_t port, const Frame& f, uint16_t queue = 0) {
    rte_mbuf* m = rte_pktmbuf_alloc(runtime_->router().pool);
    REQUIRE(m != nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    REQUIRE(rte_ring_enqueue(rx_[port][queue], m) == 0);
  }

  void poll(uint16_t queue = 0) {
    dataplane::worker_poll(worker(queue));
    runtime_->service(rte_get_tsc_cycles());
  }

  // Everything transmitted on port's TX queue since the last call.
  std::vector<Frame> sent(uint16_t port, uint16_t queue = 0) {
    std::vector<Frame> out;
    void* obj;
    while (rte_ring_dequeue(tx_[port][queue], &obj) == 0) {
      auto* m = static_cast<rte_mbuf*>(obj);
      const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out.emplace_back(d, d + rte_pktmbuf_data_len(m));
      rte_pktmbuf_free(m);
    }
    return out;
  }


  uint64_t drops(net::DropReason r, uint16_t queue = 0) {
    return worker(queue).counters.drops[static_cast<size_t>(r)].get();
  }

 private:
  std::string names_[2];
  std::vector<rte_ring*> rx_[2], tx_[2];
  std::unique_ptr<control::Runtime> runtime_;
};

const char* kStaticNeighbours = R"(neighbours = (
  { address = "198.18.2.2"; mac = "02:55:00:00:00:02"; port = "wan"; },
  { address = "198.18.1.2"; mac = "02:cc:00:00:00:02"; port = "lan"; } );
)";

// A second host behind the LAN port, 198.18.1.7, with a static neighbour
// entry (a hairpin backend, a server beside the client): its MAC.
MacAddr add_lan_host(RingRouter& r) {
  const MacAddr mac{{0x02, 0xbb, 0, 0, 0, 0x07}};
  r.runtime().router().neighbours->set(kLan, addr("198.18.1.7"), mac, route::NeighbourState::kStatic, 0);
  return mac;
}

MacAddr dst_mac(const Frame& f) { MacAddr m; std::memcpy(m.bytes.data(), f.data(), 6); return m; }
MacAddr src_mac(const Frame& f) { MacAddr m; std::memcpy(m.bytes.data(), f.data() + 6, 6); return m; }

net::PacketMeta parsed(const Frame& f) {
  net::PacketMeta m;
  REQUIRE(net::parse_frame(f.data(), static_cast<uint32_t>(f.size()), m) == net::DropReason::kNone);
  return m;
}

}  // namespace

TEST_CASE("a routed packet leaves the right port with new MACs, TTL-1 and a valid checksum") {
  RingRouter r(kStaticNeighbours);
  const Frame in = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").ttl(64)
                       .tcp(40000, 80, 0x02).payload("GET / HTTP/1.1\r\n").build();
  r.receive(kLan, in);
  auto out = r.sent(kWan);
  INFO(r.runtime().stats_text());
  REQUIRE(out.size() == 1);
  const Frame& f = out[0];
  CHECK(dst_mac(f) == kServerMac);
  CHECK(src_mac(f) == r.mac(kWan));
  REQUIRE(f.size() == in.size());
  CHECK(f[14 + 8] == 63);
  CHECK(net::checksum(f.data() + 14, 20) == 0);
  // Everything but MACs, TTL and the header checksum is untouched.
  CHECK(std::equal(f.begin() + 12, f.begin() + 14 + 8, in.begin() + 12));
  CHECK(std::equal(f.begin() + 14 + 12, f.end(), in.begin() + 14 + 12));
  CHECK(r.sent(kLan).empty());
  CHECK(r.worker().counters.forwarded.get() == 1);
  CHECK(r.worker().counters.port[kLan].rx_packets.get() == 1);
  CHECK(r.worker().counters.port[kWan].tx_packets.get() == 1);
  CHECK(r.worker().counters.port[kWan].tx_bytes.get() == in.size());
}

TEST_CASE("a neighbour's new MAC, or its entry gone, holds from the next burst on") {
  RingRouter r(kStaticNeighbours);
  const Frame in = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build();
  r.receive(kLan, in);
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  CHECK(dst_mac(out[0]) == kServerMac);

  // The worker keeps the gateway's entry across bursts; the control thread's
  // write must still reach the next packet.
  const MacAddr moved{{0x02, 0x55, 0, 0, 0, 0x09}};
  route::NeighbourTable& table = *r.runtime().router().neighbours;
  REQUIRE(table.set(kWan, addr("198.18.2.2"), moved, route::NeighbourState::kReachable, 0));
  r.receive(kLan, in);
  out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  CHECK(dst_mac(out[0]) == moved);

  REQUIRE(table.erase(kWan, addr("198.18.2.2")));
  r.receive(kLan, in);
  out = r.sent(kWan);
  REQUIRE(out.size() == 1);  // an ARP request, and the packet waits
  CHECK(dst_mac(out[0]) == kBroadcast);
  CHECK(r.worker().pending.size() == 1);
}

TEST_CASE("a connected destination is its own next hop") {
  RingRouter r(kStaticNeighbours);
  r.receive(kWan, PacketBuilder().eth(kServerMac, r.mac(kWan)).ipv4("198.18.2.2", "198.18.1.2").udp(53, 3333).build());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  CHECK(dst_mac(out[0]) == kClientMac);
}

TEST_CASE("TTL 1 is answered with ICMP Time Exceeded quoting the packet") {
  RingRouter r(kStaticNeighbours);
  const Frame in = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").ttl(1)
                       .udp(33434, 33435).payload("traceroute").build();
  r.receive(kLan, in);
  CHECK(r.sent(kWan).empty());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const Frame& f = out[0];
  const auto m = parsed(f);
  CHECK(dst_mac(f) == kClientMac);
  CHECK(src_mac(f) == r.mac(kLan));
  CHECK(m.tuple.proto == net::kProtoIcmp);
  CHECK(m.icmp_type == 11);
  CHECK(m.icmp_code == 0);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.1.1"));
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
  CHECK(net::checksum(f.data() + 14 + 20, f.size() - 14 - 20) == 0);
  // The quote is the original datagram, whole (it is under 576 bytes).
  CHECK(std::equal(f.begin() + 14 + 28, f.end(), in.begin() + 14));
  CHECK(r.drops(net::DropReason::kTtlExceeded) == 1);
  CHECK(r.worker().counters.icmp_errors_sent.get() == 1);
}

TEST_CASE("no route is answered with ICMP Destination Unreachable (net)") {
  RingRouter r(kStaticNeighbours);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.20.0.1").tcp(1, 2).build());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const auto m = parsed(out[0]);
  CHECK(m.icmp_type == 3);
  CHECK(m.icmp_code == 0);
  CHECK(r.drops(net::DropReason::kNoRoute) == 1);
}

TEST_CASE("a packet over the egress MTU gets Fragmentation Needed with the MTU") {
  RingRouter r(kStaticNeighbours);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").dont_fragment()
                      .udp(1, 2).payload(std::vector<uint8_t>(1450, 7)).build());
  CHECK(r.sent(kWan).empty());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const auto m = parsed(out[0]);
  CHECK(m.icmp_type == 3);
  CHECK(m.icmp_code == 4);
  CHECK(((out[0][14 + 20 + 6] << 8) | out[0][14 + 20 + 7]) == 1400);
  CHECK(out[0].size() == 14 + 576);  // quote capped at 576 bytes of IP datagram
  CHECK(r.drops(net::DropReason::kFragmentationNeeded) == 1);
}

TEST_CASE("ICMP errors are rate-limited by a per-worker token bucket") {
  RingRouter r(std::string(kStaticNeighbours) + "icmp = { rate = 1; burst = 2; };\n");
  for (int i = 0; i < 5; ++i) {
    r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").ttl(1).udp(1, 2).build());
  }
  CHECK(r.sent(kLan).size() == 2);
  CHECK(r.worker().counters.icmp_rate_limited.get() == 3);
  CHECK(r.drops(net::DropReason::kTtlExceeded) == 5);
}

TEST_CASE("no ICMP error is sent about an ICMP error") {
  RingRouter r(kStaticNeighbours);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").ttl(1)
                      .icmp(3, 1).payload(std::vector<uint8_t>(28, 0)).build());
  CHECK(r.sent(kLan).empty());
  CHECK(r.drops(net::DropReason::kTtlExceeded) == 1);
}

TEST_CASE("an echo request to the router's address is answered") {
  RingRouter r(kStaticNeighbours);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.1")
                      .icmp(8, 0, 0x77, 3).payload("ping-data").build());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const auto m = parsed(out[0]);
  CHECK(m.icmp_type == 0);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.1.1"));
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
  CHECK(net::to_host(m.tuple.src_port) == 0x77);
  CHECK(net::checksum(out[0].data() + 14 + 20, out[0].size() - 34) == 0);
  CHECK(r.worker().counters.local_delivered.get() == 1);
}

TEST_CASE("the router answers on its other ports' addresses too, and drops other local traffic") {
  RingRouter r(kStaticNeighbours);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.1").icmp(8, 0, 1, 1).build());
  CHECK(r.sent(kLan).size() == 1);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.1").tcp(1, 22).build());
  CHECK(r.sent(kLan).empty());
  CHECK(r.drops(net::DropReason::kLocalUnsupported) == 1);
}

TEST_CASE("ARP requests for the router's address are answered and the asker is learned") {
  RingRouter r;
  r.receive(kLan, PacketBuilder().eth(kClientMac, kBroadcast).arp(1, kClientMac, "198.18.1.2", MacAddr{}, "198.18.1.1").build());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const Frame& f = out[0];
  CHECK(dst_mac(f) == kClientMac);
  CHECK(src_mac(f) == r.mac(kLan));
  CHECK(f[14 + 7] == 2);  // reply
  CHECK(std::equal(f.begin() + 14 + 8, f.begin() + 14 + 14, r.mac(kLan).bytes.begin()));
  CHECK(std::equal(f.begin() + 14 + 18, f.begin() + 14 + 24, kClientMac.bytes.begin()));
  auto learned = r.runtime().router().neighbours->lookup(kLan, addr("198.18.1.2"));
  REQUIRE(learned);
  CHECK(learned->mac == kClientMac);
}

TEST_CASE("ARP for someone else's address is not answered") {
  RingRouter r;
  r.receive(kLan, PacketBuilder().eth(kClientMac, kBroadcast).arp(1, kClientMac, "198.18.1.2", MacAddr{}, "198.18.1.7").build());
  CHECK(r.sent(kLan).empty());
  CHECK_FALSE(r.runtime().router().neighbours->lookup(kLan, addr("198.18.1.2")));
}

TEST_CASE("an unresolved next hop is ARPed for; the packet waits and leaves on the reply") {
  RingRouter r;
  const Frame in = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").tcp(1, 2).build();
  r.receive(kLan, in);
  auto req = r.sent(kWan);
  REQUIRE(req.size() == 1);
  CHECK(dst_mac(req[0]) == kBroadcast);
  CHECK(req[0][14 + 7] == 1);  // request
  CHECK(std::equal(req[0].begin() + 14 + 14, req[0].begin() + 14 + 18, std::vector<uint8_t>{198, 18, 2, 1}.begin()));
  CHECK(std::equal(req[0].begin() + 14 + 24, req[0].begin() + 14 + 28, std::vector<uint8_t>{198, 18, 2, 2}.begin()));
  CHECK(r.worker().pending.size() == 1);

  // A second packet to the same next hop waits too, without a second request.
  r.receive(kLan, in);
  CHECK(r.sent(kWan).empty());

  r.receive(kWan, PacketBuilder().eth(kServerMac, r.mac(kWan)).arp(2, kServerMac, "198.18.2.2", r.mac(kWan), "198.18.2.1").build());
  r.poll();
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 2);
  CHECK(dst_mac(out[0]) == kServerMac);
  CHECK(out[0][14 + 8] == 63);
  CHECK(r.worker().pending.empty());
}

TEST_CASE("the ARP queue is bounded and unresolved packets time out") {
  RingRouter r("arp = { queue = 2; resolve_timeout_ms = 10; };\n");
  const Frame in = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").tcp(1, 2).build();
  for (int i = 0; i < 3; ++i) r.receive(kLan, in);
  CHECK(r.drops(net::DropReason::kNeighbourQueueFull) == 1);
  CHECK(r.worker().pending.size() == 2);
  rte_delay_ms(20);
  r.poll();
  CHECK(r.drops(net::DropReason::kNeighbourUnresolved) == 2);
  CHECK(r.worker().pending.empty());
}

TEST_CASE("malformed and foreign frames are dropped and counted by reason") {
  RingRouter r(kStaticNeighbours);
  auto base = [&] { return PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10"); };
  r.receive(kLan, base().udp(1, 2).ip_checksum(0xdead).build());
  r.receive(kLan, base().udp(1, 2).ihl(3).build());
  r.receive(kLan, base().udp(1, 2).total_length(999).build());
  r.receive(kLan, PacketBuilder().eth(kClientMac, kServerMac).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build());
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.255").udp(1, 2).build());
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ether_type(0x86dd).payload(std::vector<uint8_t>(40, 0)).build());
  CHECK(r.sent(kLan).empty());
  CHECK(r.sent(kWan).empty());
  CHECK(r.drops(net::DropReason::kBadIpChecksum) == 1);
  CHECK(r.drops(net::DropReason::kBadIpHeaderLength) == 1);
  CHECK(r.drops(net::DropReason::kBadIpTotalLength) == 1);
  CHECK(r.drops(net::DropReason::kNotForUs) == 1);
  CHECK(r.drops(net::DropReason::kMartianDestination) == 1);
  CHECK(r.drops(net::DropReason::kIpv6NotForwarded) == 1);
  CHECK(r.worker().counters.port[kLan].rx_packets.get() == 6);
}

TEST_CASE("a frame for a MAC one bit off the port's, in its first or its last byte, is not for us") {
  RingRouter r(kStaticNeighbours);
  for (const size_t byte : {size_t{0}, size_t{3}, size_t{5}}) {
    MacAddr near = r.mac(kLan);
    near.bytes[byte] ^= byte == 0 ? 0x02 : 0x01;  // byte 0: the locally administered bit, not multicast
    r.receive(kLan, PacketBuilder().eth(kClientMac, near).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build());
  }
  CHECK(r.sent(kWan).empty());
  CHECK(r.drops(net::DropReason::kNotForUs) == 3);
  // The source MAC, whose first two bytes load with the destination, takes no part.
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build());
  CHECK(r.sent(kWan).size() == 1);
}

// RFC 1812 5.3.7: a connected network's broadcast address is never a valid
// source. The worker first tests the host bits every such address has set.
TEST_CASE("a source that is a connected network's broadcast address is a martian") {
  RingRouter r(kStaticNeighbours);
  auto from = [&](const char* src) {
    return PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4(src, "198.19.0.10").udp(1, 2).build();
  };
  r.receive(kLan, from("198.18.1.255"));  // lan's own /24
  r.receive(kLan, from("198.18.2.255"));  // wan's /24
  CHECK(r.drops(net::DropReason::kMartianSource) == 2);
  CHECK(r.sent(kWan).empty());
  r.receive(kLan, from("198.18.3.255"));  // all host bits set, but no connected network's
  r.receive(kLan, from("198.18.1.127"));  // seven of the eight
  r.receive(kLan, from("198.18.1.2"));
  CHECK(r.sent(kWan).size() == 3);
  CHECK(r.drops(net::DropReason::kMartianSource) == 2);
}

TEST_CASE("directed broadcasts of prefixes of different lengths are all recognised") {
  auto r = std::make_unique<dataplane::Router>();
  r->add_directed_broadcast(*net::parse_ipv4("198.18.1.1"), 0xffu);        // /24
  r->add_directed_broadcast(*net::parse_ipv4("198.18.9.5"), 0x3u);         // /30
  r->add_directed_broadcast(*net::parse_ipv4("198.19.0.1"), 0xffffu);      // /16
  CHECK(r->is_directed_broadcast(*net::parse_ipv4("198.18.1.255")));
  CHECK(r->is_directed_broadcast(*net::parse_ipv4("198.18.9.7")));
  CHECK(r->is_directed_broadcast(*net::parse_ipv4("198.19.255.255")));
  CHECK_FALSE(r->is_directed_broadcast(*net::parse_ipv4("198.18.9.6")));
  CHECK_FALSE(r->is_directed_broadcast(*net::parse_ipv4("198.18.9.3")));
  CHECK_FALSE(r->is_directed_broadcast(*net::parse_ipv4("198.19.0.255")));
  CHECK_FALSE(r->is_directed_broadcast(*net::parse_ipv4("198.18.1.254")));
  auto none = std::make_unique<dataplane::Router>();
  CHECK_FALSE(none->is_directed_broadcast(0xffffffffu));
}

TEST_CASE("a VLAN-tagged packet is forwarded untagged and Ethernet padding is trimmed") {
  RingRouter r(kStaticNeighbours);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).vlan(10).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build());
  Frame padded = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build();
  padded.resize(60, 0xee);
  r.receive(kLan, padded);
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 2);
  CHECK(out[0].size() == 14 + 28);
  CHECK(out[0][12] == 0x08);
  CHECK(out[0][13] == 0x00);
  CHECK(out[1].size() == 14 + 28);
}

TEST_CASE("a burst mixing good, bad and local packets keeps order per port") {
  RingRouter r(kStaticNeighbours);
  for (uint16_t i = 0; i < 40; ++i) {
    auto b = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").udp(1000, i);
    if (i % 5 == 0) b.ip_checksum(1);
    rte_mbuf* m = rte_pktmbuf_alloc(r.runtime().router().pool);
    const Frame f = b.build();
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    dataplane::worker_process_burst(r.worker(), kLan, &m, 1);
  }
  dataplane::worker_flush(r.worker());
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 32);
  uint16_t last = 0;
  for (const auto& f : out) {
    const uint16_t port = net::to_host(parsed(f).tuple.dst_port);
    CHECK((port > last || port == 1));
    last = port;
  }
  CHECK(r.drops(net::DropReason::kBadIpChecksum) == 8);
}

TEST_CASE("every start hashes its flows with a seed of its own, each worker's table too") {
  RingRouter a("", 2), b("", 2);
  const uint64_t seeds[] = {a.worker(0).flows->hash_seed(), b.worker(0).flows->hash_seed()};
  CHECK(seeds[0] != seeds[1]);
  CHECK(seeds[0] != conntrack::TableConfig{}.hash_seed);
  CHECK(a.worker(1).flows->hash_seed() == seeds[0]);  // one draw per start is enough: each table is private
}

TEST_CASE("two workers each serve their own queue of every port") {
  RingRouter r(kStaticNeighbours, 2);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build(), 0);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").udp(3, 4).build(), 1);
  CHECK(r.sent(kWan, 0).size() == 1);
  CHECK(r.sent(kWan, 1).size() == 1);
  CHECK(r.worker(0).counters.forwarded.get() == 1);
  CHECK(r.worker(1).counters.forwarded.get() == 1);
}

TEST_CASE("applying rules publishes a generation and frees the old one after the worker is quiescent") {
  RingRouter r(kStaticNeighbours);
  auto& rules = r.runtime().rules();
  const std::string text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                           "-A FORWARD -p tcp --dport 22 -j DROP\nCOMMIT\n";
  auto first = rules.apply(text, "a.rules", false, false);
  REQUIRE(std::holds_alternative<control::ApplyResult>(first));
  CHECK(std::get<control::ApplyResult>(first).generation == 1);
  CHECK(r.runtime().router().rules.load() == rules.current());
  auto second = rules.apply(text, "b.rules", false, false);
  REQUIRE(std::holds_alternative<control::ApplyResult>(second));
  CHECK(rules.current()->generation == 2);
  CHECK(rules.pending_reclaim() == 1);  // the worker may still hold generation 1
  r.poll();                               // one quiescent state later
  CHECK(rules.pending_reclaim() == 0);
}

TEST_CASE("a rules file with a mistake is refused with its position and the running rules stay") {
  RingRouter r(kStaticNeighbours);
  auto& rules = r.runtime().rules();
  REQUIRE(std::holds_alternative<control::ApplyResult>(
      rules.apply("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DROP\nCOMMIT\n", "good.rules", false, false)));
  auto bad = rules.apply("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 99999 -j DROP\nCOMMIT\n",
                         "bad.rules", false, false);
  REQUIRE(std::holds_alternative<std::string>(bad));
  CHECK_THAT(std::get<std::string>(bad), Catch::StartsWith("bad.rules:3:"));
  CHECK(rules.current()->generation == 1);
  CHECK_THAT(rules.save(false), Catch::Contains("-A FORWARD -j DROP"));
}

// ---- rules and connection tracking ----------------------------------------

namespace {

void load_rules(RingRouter& r, const std::string& text) {
  auto applied = r.runtime().rules().apply(text, "test.rules", false, false);
  if (auto* e = std::get_if<std::string>(&applied)) FAIL(*e);
}

Frame client_tcp(RingRouter& r, const char* dst, uint16_t sport, uint16_t dport, uint8_t flags) {
  return PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", dst).tcp(sport, dport, flags).build();
}

Frame server_tcp(RingRouter& r, const char* src, uint16_t sport, const char* dst, uint16_t dport, uint8_t flags) {
  return PacketBuilder().eth(kServerMac, r.mac(kWan)).ipv4(src, dst).tcp(sport, dport, flags).build();
}

uint64_t rule_packets(RingRouter& r, const std::string& rule_text) {
  const std::string saved = r.runtime().rules().save(true);
  const size_t at = saved.find(rule_text);
  REQUIRE(at != std::string::npos);
  const size_t open = saved.rfind('[', at);
  return std::stoull(saved.substr(open + 1));
}

bool transport_checksum_ok(const Frame& f) {
  const uint8_t* ip = f.data() + 14;
  Frame copy(f);
  uint8_t* l4 = copy.data() + 14 + 20;
  const uint8_t proto = ip[9];
  const size_t at = proto == 6 ? 16 : proto == 17 ? 6 : 2;
  uint16_t stored;
  std::memcpy(&stored, l4 + at, 2);
  l4[at] = l4[at + 1] = 0;
  return net::ipv4_l4_checksum(copy.data() + 14) == stored && net::checksum(ip, 20) == 0;
}

const char* kStatefulFilter = R"(*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i lan -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp --dport 69 -j REJECT
COMMIT
)";

}  // namespace

TEST_CASE("a stateful filter lets replies of allowed connections in and nothing else") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, kStatefulFilter);
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 80, 0x02));
  REQUIRE(r.sent(kWan).size() == 1);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.1.2", 40000, 0x12));
  CHECK(r.sent(kLan).size() == 1);  // the SYN/ACK is ESTABLISHED
  r.receive(kWan, server_tcp(r, "198.18.2.2", 5555, "198.18.1.2", 22, 0x02));
  CHECK(r.sent(kLan).empty());  // an unsolicited connection from outside
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40001, 443, 0x02));
  CHECK(r.sent(kWan).empty());  // not allowed by any rule: the policy drops it
  CHECK(r.drops(net::DropReason::kRuleDrop) == 2);
  CHECK(rule_packets(r, "-A FORWARD -i lan -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT") == 1);
  CHECK(rule_packets(r, "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT") == 1);
  CHECK(r.worker().flows->size() == 1);
}

TEST_CASE("every rule a packet matches is counted, also past the matches one hook's result lists") {
  RingRouter r(kStaticNeighbours);
  std::string text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";
  for (int k = 0; k < 40; ++k) text += "-A FORWARD -p tcp -m comment --comment c" + std::to_string(k) + "\n";
  text += "-A FORWARD -p tcp -j ACCEPT\nCOMMIT\n";
  load_rules(r, text);
  const Frame syn = client_tcp(r, "198.18.2.2", 40000, 80, 0x02);
  r.receive(kLan, syn);
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 80, 0x10));
  REQUIRE(r.sent(kWan).size() == 2);
  // The kernel counts every rule a packet matches (checked with 41 such
  // rules in a namespace's OUTPUT: iptables-save -c showed each with every
  // packet); a HookResult lists kMaxMatched of them.
  const std::string saved = r.runtime().rules().save(true);
  const std::string counts = "[2:" + std::to_string(2 * (syn.size() - 14)) + "] -A FORWARD -p tcp ";
  for (int k = 0; k < 40; ++k) {
    INFO("rule c" << k);
    CHECK(saved.find(counts + "-m comment --comment c" + std::to_string(k) + "\n") != std::string::npos);
  }
  CHECK(saved.find(counts + "-j ACCEPT\n") != std::string::npos);
}

TEST_CASE("a connmark set on a connection's first packet stays with the flow, also through rules that never read it") {
  RingRouter r(kStaticNeighbours);
  const std::string marking = R"(*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i lan -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x7/0xffffffff
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m connmark --mark 0x7 -j ACCEPT
COMMIT
)";
  load_rules(r, marking);
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 80, 0x02));
  REQUIRE(r.sent(kWan).size() == 1);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.1.2", 40000, 0x12));
  CHECK(r.sent(kLan).size() == 1);  // the reply carries the flow's mark
  // Rules that neither read nor set a connmark: the worker does not load it
  // (it lies in the entry's second line) and must not overwrite it either.
  load_rules(r, kStatefulFilter);
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 80, 0x10));
  CHECK(r.sent(kWan).size() == 1);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.1.2", 40000, 0x10));
  CHECK(r.sent(kLan).size() == 1);
  // Back to a filter on the mark: the flow still has it, another has none.
  load_rules(r, marking.substr(marking.find("*filter")));
  r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.1.2", 40000, 0x10));
  CHECK(r.sent(kLan).size() == 1);
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40001, 80, 0x02));
  CHECK(r.sent(kWan).empty());
  uint32_t marks = 0, flows = 0;
  r.worker().flows->for_each(0, 1024, rte_rdtsc(), [&](const conntrack::Entry& e) {
    if (e.orig.src_port == net::to_be16(40000)) marks = e.mark;
    ++flows;
  });
  CHECK(marks == 7);
  CHECK(flows == 1);  // the unmarked SYN was dropped before its flow was confirmed
}

TEST_CASE("per-flow counters are kept only with conntrack accounting on, as the kernel's nf_conntrack_acct") {
  for (const bool on : {false, true}) {
    INFO("accounting " << on);
    RingRouter r(kStaticNeighbours + std::string(on ? "conntrack = { accounting = true; };\n" : ""));
    load_rules(r, kStatefulFilter);
    CHECK(r.worker().flows->accounting() == on);
    r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 80, 0x02));
    r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.1.2", 40000, 0x12));
    r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 80, 0x10));
    REQUIRE(r.sent(kWan).size() == 2);
    conntrack::FlowInfo info;
    r.worker().flows->for_each(0, 1024, rte_rdtsc(), [&](const conntrack::Entry& e) {
      info = r.worker().flows->info(e, rte_rdtsc());
    });
    CHECK(info.accounted == on);
    CHECK(info.packets[0] == (on ? 2u : 0u));
    CHECK(info.packets[1] == (on ? 1u : 0u));
    CHECK(info.bytes[0] == (on ? 80u : 0u));
  }
}

TEST_CASE("what the router sends itself traverses OUTPUT: errors are RELATED, echo replies ESTABLISHED, a DROP silences them") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, R"(*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p icmp -m conntrack --ctstate RELATED -m icmp --icmp-type 11 -j DROP
-A OUTPUT -p icmp -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A OUTPUT -p icmp -m conntrack --ctstate RELATED -o lan -j ACCEPT
-A OUTPUT -j DROP
COMMIT
)");
  // TTL expiry: the Time Exceeded is RELATED and the first rule drops it.
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.0.10").ttl(1)
                      .udp(33434, 33435).build());
  CHECK(r.sent(kLan).empty());
  CHECK(r.drops(net::DropReason::kRuleDrop) == 1);
  CHECK(rule_packets(r, "-A OUTPUT -p icmp -m conntrack --ctstate RELATED -m icmp --icmp-type 11 -j DROP") == 1);
  // An echo reply is ESTABLISHED.
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.1")
                      .icmp(8, 0, 0x77, 3).build());
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  CHECK(parsed(out[0]).icmp_type == 0);
  CHECK(rule_packets(r, "-A OUTPUT -p icmp -m conntrack --ctstate ESTABLISHED -j ACCEPT") == 1);
  // No route: the Destination Unreachable is RELATED and leaves on lan.
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.20.0.1").tcp(1, 2).build());
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  CHECK(parsed(out[0]).icmp_type == 3);
  CHECK(rule_packets(r, "-A OUTPUT -o lan -p icmp -m conntrack --ctstate RELATED -j ACCEPT") == 1);
  CHECK(rule_packets(r, "-A OUTPUT -j DROP") == 0);
  // Forwarded packets never see OUTPUT.
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2").udp(5000, 53).build());
  CHECK(r.sent(kWan).size() == 1);
  CHECK(rule_packets(r, "-A OUTPUT -j DROP") == 0);
}

TEST_CASE("REJECT answers a TCP connection with a reset and UDP with port unreachable") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, kStatefulFilter);
  r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 23, 0x02));
  auto out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const auto rst = parsed(out[0]);
  CHECK(rst.tuple.proto == net::kProtoTcp);
  CHECK(rst.tcp_flags == 0x14);  // RST|ACK: the SYN had no ACK
  CHECK(net::to_host(rst.tuple.src.v4()) == addr("198.18.2.2"));
  CHECK(net::to_host(rst.tuple.src_port) == 23);
  CHECK(net::to_host(rst.tuple.dst_port) == 40000);
  CHECK(transport_checksum_ok(out[0]));
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2").udp(3000, 69).build());
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  CHECK(parsed(out[0]).icmp_type == 3);
  CHECK(parsed(out[0]).icmp_code == 3);
  CHECK(r.drops(net::DropReason::kRuleReject) == 2);
}

TEST_CASE("DNAT sends a connection to its backend and translates the replies back") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.2:8080\n"
                "COMMIT\n");
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02));
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  auto m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.2.2"));
  CHECK(net::to_host(m.tuple.dst_port) == 8080);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.1.2"));
  CHECK(transport_checksum_ok(out[0]));
  CHECK(dst_mac(out[0]) == kServerMac);

  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12));
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.19.5.5"));
  CHECK(net::to_host(m.tuple.src_port) == 80);
  CHECK(transport_checksum_ok(out[0]));

  // Later packets of the connection keep their translation without the nat table.
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x10));
  out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.dst_port) == 8080);
  CHECK(rule_packets(r, "-j DNAT --to-destination 198.18.2.2:8080") == 1);
}

TEST_CASE("kube-proxy rules listed as iptables-save lists them translate and count as loaded") {
  // Chains by name, as iptables-save prints them: a service's KUBE-SEP
  // chains lie before KUBE-SERVICES and apart from its KUBE-SVC chain.
  // dpgate lays them out (and numbers their rules and counters) depth first
  // from PREROUTING; what a user sees must not move.
  RingRouter r(kStaticNeighbours);
  const std::string rules =
      "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
      ":KUBE-MARK-MASQ - [0:0]\n:KUBE-SEP-A1 - [0:0]\n:KUBE-SEP-A2 - [0:0]\n:KUBE-SEP-B1 - [0:0]\n"
      ":KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SVC-B - [0:0]\n"
      "-A PREROUTING -j KUBE-SERVICES\n"
      "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
      "-A KUBE-SEP-A1 -s 198.18.2.2/32 -j KUBE-MARK-MASQ\n"
      "-A KUBE-SEP-A1 -p tcp -m tcp -j DNAT --to-destination 198.18.2.2:8080\n"
      "-A KUBE-SEP-A2 -s 198.18.2.2/32 -j KUBE-MARK-MASQ\n"
      "-A KUBE-SEP-A2 -p tcp -m tcp -j DNAT --to-destination 198.18.2.2:8081\n"
      "-A KUBE-SEP-B1 -s 198.18.2.2/32 -j KUBE-MARK-MASQ\n"
      "-A KUBE-SEP-B1 -p tcp -m tcp -j DNAT --to-destination 198.18.2.2:8082\n"
      "-A KUBE-SERVICES -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n"
      "-A KUBE-SERVICES -d 198.19.5.6/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-B\n"
      "-A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A1\n"
      "-A KUBE-SVC-A -j KUBE-SEP-A2\n"
      "-A KUBE-SVC-B -j KUBE-SEP-B1\n"
      "COMMIT\n";
  load_rules(r, rules);
  uint32_t to_port[3] = {0, 0, 0};
  for (uint16_t k = 0; k < 60; ++k) {
    const bool a = k < 40;
    r.receive(kLan, client_tcp(r, a ? "198.19.5.5" : "198.19.5.6", uint16_t(40000 + k), 80, 0x02));
    const auto out = r.sent(kWan);
    REQUIRE(out.size() == 1);
    const uint16_t port = net::to_host(parsed(out[0]).tuple.dst_port);
    INFO("connection " << k);
    if (a) {
      CHECK((port == 8080 || port == 8081));
    } else {
      CHECK(port == 8082);
    }
    if (port >= 8080 && port <= 8082) ++to_port[port - 8080];
  }
  CHECK(to_port[0] > 5);  // the statistic split still splits
  CHECK(to_port[1] > 5);
  CHECK(rule_packets(r, "-A PREROUTING -j KUBE-SERVICES") == 60);
  CHECK(rule_packets(r, "--dport 80 -j KUBE-SVC-A") == 40);
  CHECK(rule_packets(r, "--dport 80 -j KUBE-SVC-B") == 20);
  CHECK(rule_packets(r, "-j KUBE-SEP-A1") == to_port[0]);
  CHECK(rule_packets(r, "-A KUBE-SVC-A -j KUBE-SEP-A2") == to_port[1]);
  CHECK(rule_packets(r, "-A KUBE-SVC-B -j KUBE-SEP-B1") == 20);
  CHECK(rule_packets(r, "198.18.2.2:8080") == to_port[0]);
  CHECK(rule_packets(r, "198.18.2.2:8081") == to_port[1]);
  CHECK(rule_packets(r, "198.18.2.2:8082") == 20);
  CHECK(rule_packets(r, "-A KUBE-SEP-A1 -s 198.18.2.2/32") == 0);  // the clients are not the backend
  CHECK(rule_packets(r, "-A KUBE-MARK-MASQ") == 0);
  // Saved as loaded: same chains, same order, same rules.
  std::string saved = r.runtime().rules().save(false);
  saved = saved.substr(saved.find("*nat"));
  CHECK(saved == rules);
}

TEST_CASE("ClientIP affinity holds for new clients after the recent table has filled") {
  // kube-proxy's sessionAffinity: ClientIP chains, two endpoints (ports
  // 8080 and 8081). 200 clients in a 64-address table: each client's second
  // connection must reach its first one's endpoint, also once the table is
  // full of earlier clients (the least recently hit makes room).
  RingRouter r(std::string(kStaticNeighbours) + "recent = { size = 64; };\n");
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:SVC - [0:0]\n:SEP1 - [0:0]\n"
                ":SEP2 - [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j SVC\n"
                "-A SVC -m recent --rcheck --seconds 10800 --reap --name SEP1 --mask 255.255.255.255 --rsource -j SEP1\n"
                "-A SVC -m recent --rcheck --seconds 10800 --reap --name SEP2 --mask 255.255.255.255 --rsource -j SEP2\n"
                "-A SVC -m statistic --mode random --probability 0.50000000000 -j SEP1\n"
                "-A SVC -j SEP2\n"
                "-A SEP1 -p tcp -m recent --set --name SEP1 --mask 255.255.255.255 --rsource "
                "-j DNAT --to-destination 198.18.2.2:8080\n"
                "-A SEP2 -p tcp -m recent --set --name SEP2 --mask 255.255.255.255 --rsource "
                "-j DNAT --to-destination 198.18.2.2:8081\n"
                "COMMIT\n");
  auto endpoint_of = [&r](const std::string& client, uint16_t sport) -> uint16_t {
    r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4(client.c_str(), "198.19.5.5")
                        .tcp(sport, 80, 0x02).build());
    auto out = r.sent(kWan);
    REQUIRE(out.size() == 1);
    return net::to_host(parsed(out[0]).tuple.dst_port);
  };
  uint32_t to_first = 0;
  for (int c = 10; c < 210; ++c) {
    const std::string client = "198.18.1." + std::to_string(c);
    INFO("client " << client);
    const uint16_t first = endpoint_of(client, 40000);
    to_first += first == 8080;
    CHECK(endpoint_of(client, 40001) == first);
  }
  CHECK(to_first > 50);  // the statistic split still splits
  CHECK(to_first < 150);
  CHECK_THAT(r.runtime().stats_text(), Catch::Contains("recent: 64 addresses, 136 evicted\n"));
  CHECK_THAT(r.runtime().metrics_text(), Catch::Contains("dpgate_recent_evictions_total 136\n"));
}

TEST_CASE("an unanswered flow walks nat once: later packets are NEW, keep the first one's DNAT and count no nat rule") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p udp -m udp --dport 53 -j DNAT --to-destination 198.18.2.2:5353\n"
                "-A POSTROUTING -p udp -j ACCEPT\nCOMMIT\n"
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                "-A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n");
  for (int k = 0; k < 3; ++k) {
    r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.5.5").udp(40000, 53).build());
    auto out = r.sent(kWan);
    REQUIRE(out.size() == 1);
    CHECK(net::to_host(parsed(out[0]).tuple.dst_port) == 5353);
  }
  // The kernel's counters for the same three datagrams (checked in a namespace router): 1, 1, 3.
  CHECK(rule_packets(r, "-j DNAT --to-destination 198.18.2.2:5353") == 1);
  CHECK(rule_packets(r, "-A POSTROUTING -p udp -j ACCEPT") == 1);
  CHECK(rule_packets(r, "-A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT") == 3);
}

TEST_CASE("rules reading the fields the worker fills only on demand (ct tuples, address types) see them on every packet") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.2:8080\n"
                "COMMIT\n"
                "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                "-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT\n"
                "-A FORWARD -m conntrack --ctorigdst 198.19.5.5/32 --ctreplsrcport 8080 -j ACCEPT\n"
                "COMMIT\n");
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02));
  REQUIRE(r.sent(kWan).size() == 1);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12));  // an existing flow: tuples filled late
  CHECK(r.sent(kLan).size() == 1);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x10));
  CHECK(r.sent(kWan).size() == 1);
  CHECK(rule_packets(r, "-A FORWARD -m conntrack --ctorigdst 198.19.5.5 --ctreplsrcport 8080 -j ACCEPT") == 3);
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.1").icmp(8, 0, 1, 1).build());
  CHECK(r.sent(kLan).size() == 1);  // the echo request was LOCAL to the INPUT rule
  CHECK(rule_packets(r, "-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT") == 1);
}

TEST_CASE("--ctexpire sees the flow's seconds left, which the worker works out only when a rule reads them") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p udp -m conntrack --ctexpire 20:40 -j DROP\nCOMMIT\n");
  const Frame datagram =
      PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2").udp(40000, 53).build();
  r.receive(kLan, datagram);
  CHECK(r.sent(kWan).size() == 1);  // the first packet: a flow not yet timed (0 s)
  r.receive(kLan, datagram);
  CHECK(r.sent(kWan).empty());  // 30 s left (UDP, unreplied): dropped
  CHECK(rule_packets(r, "--ctexpire 20:40") == 1);
}

TEST_CASE("packets of one flow in one burst each see the state their own turn left: NEW before the reply, ESTABLISHED after") {
  // The worker tracks a whole burst before any rule reads a packet's view,
  // and builds most of the view only when a rule does: it must not show a
  // packet what a later packet of the burst changed. Two hosts behind one
  // port, so that a datagram and its answer arrive in the same burst.
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                "-A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT\n"
                "-A FORWARD -p udp -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n");
  const MacAddr server_mac = add_lan_host(r);
  const Frame query =
      PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.7").udp(40000, 53).build();
  const Frame answer =
      PacketBuilder().eth(server_mac, r.mac(kLan)).ipv4("198.18.1.7", "198.18.1.2").udp(53, 40000).build();
  r.receive(kLan, query);
  REQUIRE(r.sent(kLan).size() == 1);
  r.put(kLan, query);   // still unanswered when it passes: NEW
  r.put(kLan, answer);  // the reply: ESTABLISHED, and the flow has seen a reply from now on
  r.put(kLan, query);   // ESTABLISHED
  r.poll();
  CHECK(r.sent(kLan).size() == 3);
  // The kernel, packet by packet: NEW for the first two queries, ESTABLISHED for the rest.
  CHECK(rule_packets(r, "-A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT") == 2);
  CHECK(rule_packets(r, "-A FORWARD -p udp -m conntrack --ctstate ESTABLISHED -j ACCEPT") == 2);
}

// Two service addresses DNATed onto one backend tuple, as kube-proxy's
// ClusterIPs sharing endpoints are.
const char* kTwoServicesOneBackend =
    "*nat\n:PREROUTING ACCEPT [0:0]\n"
    "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.2:8080\n"
    "-A PREROUTING -d 198.19.5.6/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.2:8080\n"
    "COMMIT\n";

TEST_CASE("two services DNATed onto one backend tuple: the second connection's source port moves, as netfilter's null binding") {
  // The client reuses its source port towards another service address whose
  // backend is the same: the reply tuple is taken, and the kernel makes it
  // unique by moving the source port (nf_nat_alloc_null_binding).
  RingRouter r(kStaticNeighbours);
  load_rules(r, kTwoServicesOneBackend);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02));
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src_port) == 40000);

  r.receive(kLan, client_tcp(r, "198.19.5.6", 40000, 80, 0x02));
  out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  auto m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.1.2"));
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.2.2"));
  CHECK(net::to_host(m.tuple.dst_port) == 8080);
  const uint16_t moved = net::to_host(m.tuple.src_port);
  CHECK(moved != 40000);
  CHECK(moved >= 1024);
  CHECK(transport_checksum_ok(out[0]));
  CHECK(r.drops(net::DropReason::kNatNoPort) == 0);
  CHECK(r.worker().flows->size() == 2);

  // Each backend reply reaches the client from the service it asked.
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", moved, 0x12));
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.19.5.6"));
  CHECK(net::to_host(m.tuple.dst_port) == 40000);
  CHECK(transport_checksum_ok(out[0]));
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12));
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src.v4()) == addr("198.19.5.5"));
}

TEST_CASE("MASQUERADE hides the client behind the egress address and maps replies back") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan -j MASQUERADE\nCOMMIT\n");
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2").udp(5353, 53)
                      .payload("query").build());
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  auto m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.2.1"));
  const uint16_t port = net::to_host(m.tuple.src_port);
  CHECK(transport_checksum_ok(out[0]));
  r.receive(kWan, PacketBuilder().eth(kServerMac, r.mac(kWan)).ipv4("198.18.2.2", "198.18.2.1").udp(53, port)
                      .payload("answer").build());
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
  CHECK(net::to_host(m.tuple.dst_port) == 5353);
  CHECK(transport_checksum_ok(out[0]));
}

TEST_CASE("an ICMP error about a DNATed connection reaches the client translated") {
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p udp -j DNAT --to-destination 198.18.2.2:5300\nCOMMIT\n");
  const Frame query = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.19.5.5").udp(4000, 53).build();
  r.receive(kLan, query);
  auto out = r.sent(kWan);
  REQUIRE(out.size() == 1);
  std::vector<uint8_t> quote(out[0].begin() + 14, out[0].end());
  r.receive(kWan, PacketBuilder().eth(kServerMac, r.mac(kWan)).ipv4("198.18.2.2", "198.18.1.2").icmp(3, 3)
                      .payload(quote).build());
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  const auto m = parsed(out[0]);
  CHECK(m.icmp_type == 3);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.19.5.5"));
  // The quote shows the packet as the client sent it.
  net::FiveTuple quoted;
  REQUIRE(dataplane::icmp_quoted_tuple(out[0].data() + 14, m, quoted));
  CHECK(net::to_host(quoted.dst.v4()) == addr("198.19.5.5"));
  CHECK(net::to_host(quoted.dst_port) == 53);
  CHECK(net::checksum(out[0].data() + 34, out[0].size() - 34) == 0);
}

TEST_CASE("kube-proxy's random split spreads new connections evenly over the endpoints") {
  RingRouter r(kStaticNeighbours + std::string("conntrack = { max_flows = 4096; };\n"));
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n:SVC - [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j SVC\n"
                "-A SVC -m statistic --mode random --probability 0.33333333349 -p tcp -j DNAT --to-destination 198.18.2.11:80\n"
                "-A SVC -m statistic --mode random --probability 0.50000000000 -p tcp -j DNAT --to-destination 198.18.2.12:80\n"
                "-A SVC -p tcp -j DNAT --to-destination 198.18.2.13:80\nCOMMIT\n");
  for (const char* backend : {"198.18.2.11", "198.18.2.12", "198.18.2.13"}) {
    r.runtime().router().neighbours->set(kWan, addr(backend), kServerMac, route::NeighbourState::kStatic, 0);
  }
  int hits[3] = {0, 0, 0};
  for (uint16_t k = 0; k < 900; ++k) {
    r.receive(kLan, client_tcp(r, "198.19.5.5", static_cast<uint16_t>(10000 + k), 80, 0x02));
    for (const auto& f : r.sent(kWan)) hits[(net::to_host(parsed(f).tuple.dst.v4()) & 0xff) - 11]++;
  }
  INFO(hits[0] << " " << hits[1] << " " << hits[2]);
  for (int h : hits) CHECK(std::abs(h - 300) < 75);
  CHECK(hits[0] + hits[1] + hits[2] == 900);
}

TEST_CASE("with two workers the reply of a DNATed connection finds its owner through a redirect stub") {
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.2:8080\n"
                "COMMIT\n");
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02), 0);  // worker 0 owns the flow
  REQUIRE(r.sent(kWan, 0).size() == 1);
  r.poll(1);  // worker 1 takes the stub from its message ring
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12), 1);  // the reply lands on worker 1
  CHECK(r.worker(1).counters.handed_over.get() == 1);
  CHECK(r.sent(kLan, 1).empty());
  r.poll(0);  // the owner takes it over and translates it
  auto out = r.sent(kLan, 0);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src.v4()) == addr("198.19.5.5"));
  CHECK(net::to_host(parsed(out[0]).tuple.src_port) == 80);
  CHECK(r.worker(0).counters.taken_over.get() == 1);
}

namespace {
// Runs worker 0's poll from inside worker 1's receive: the moment of a race
// where worker 1 has polled its message rings and is descheduled before it
// reads its queue, while worker 0 opens the connection and the server answers.
struct PeerRunsDuringReceive {
  RingRouter* router = nullptr;
  bool done = false;
};
uint16_t run_peer_during_receive(uint16_t, uint16_t, rte_mbuf**, uint16_t n, uint16_t, void* arg) {
  auto* state = static_cast<PeerRunsDuringReceive*>(arg);
  if (n != 0 && !state->done) {
    state->done = true;
    dataplane::worker_poll(state->router->worker(0));
  }
  return n;
}
}  // namespace

TEST_CASE("with two workers a DNATed reply that arrives while its owner is still sending the stub finds the stub") {
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.2.2:8080\n"
                "COMMIT\n");
  // Worker 1's poll begins with nothing in its message ring; its receive
  // returns the server's SYN/ACK after worker 0 has taken the client's SYN.
  r.poll(1);
  PeerRunsDuringReceive state{&r};
  const uint16_t wan = r.runtime().router().ports[kWan].port_id;
  const rte_eth_rxtx_callback* cb = rte_eth_add_rx_callback(wan, 1, run_peer_during_receive, &state);
  REQUIRE(cb != nullptr);
  r.put(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02), 0);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12), 1);
  REQUIRE(rte_eth_remove_rx_callback(wan, 1, cb) == 0);
  rte_free(const_cast<rte_eth_rxtx_callback*>(cb));  // removed, not freed, by ethdev
  CHECK(state.done);
  CHECK(r.sent(kWan, 0).size() == 1);  // the SYN, to the backend
  CHECK(r.worker(1).counters.handed_over.get() == 1);
  CHECK(r.worker(1).counters.ct_invalid.get() == 0);
  CHECK(r.worker(0).counters.redirects_lost.get() == 0);
  r.poll(0);
  auto out = r.sent(kLan, 0);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src.v4()) == addr("198.19.5.5"));
}

TEST_CASE("with two workers a connection whose source port the null binding moved gets its replies through a stub") {
  // A client reuses its source port towards a second service with the same
  // backend (kube-proxy's ClusterIPs share endpoints), and the second
  // connection lands on the other worker. Its reply tuple is taken (worker 1
  // knows it from worker 0's stub), so the null binding moves the client's
  // port. The reply to the moved port goes to the client's address, not the
  // router's: no port steering finds the owner, only a stub.
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, kTwoServicesOneBackend);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02), 0);
  REQUIRE(r.sent(kWan, 0).size() == 1);
  r.poll(1);  // worker 1 takes worker 0's stub
  r.receive(kLan, client_tcp(r, "198.19.5.6", 40000, 80, 0x02), 1);
  auto out = r.sent(kWan, 1);
  REQUIRE(out.size() == 1);
  const uint16_t moved = net::to_host(parsed(out[0]).tuple.src_port);
  REQUIRE(moved != 40000);
  CHECK(r.worker(1).counters.redirects_sent.get() == 1);
  r.poll(0);  // worker 0 takes worker 1's stub

  // The reply to the moved port lands on worker 0 and is handed to worker 1.
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", moved, 0x12), 0);
  CHECK(r.worker(0).counters.handed_over.get() == 1);
  CHECK(r.sent(kLan, 0).empty());
  r.poll(1);
  out = r.sent(kLan, 1);
  REQUIRE(out.size() == 1);
  auto m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.19.5.6"));
  CHECK(net::to_host(m.tuple.dst_port) == 40000);
  CHECK(transport_checksum_ok(out[0]));
  // The first connection's reply lands on worker 1 and reaches its owner.
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12), 1);
  CHECK(r.worker(1).counters.handed_over.get() == 1);
  r.poll(0);
  out = r.sent(kLan, 0);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src.v4()) == addr("198.19.5.5"));
  CHECK(r.worker(0).counters.ct_invalid.get() + r.worker(1).counters.ct_invalid.get() == 0);
}

TEST_CASE("with two workers a DNATed flow reset by its backend takes its stubs along, and the client's port is free again") {
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, kTwoServicesOneBackend);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02), 0);
  REQUIRE(r.sent(kWan, 0).size() == 1);
  r.poll(1);
  CHECK(r.worker(1).flows->size() == 1);  // the stub
  // The backend refuses: its RST lands on worker 1, goes to the owner, and
  // the flow dies at once (a RST before any reply, as netfilter).
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x14), 1);
  r.poll(0);
  REQUIRE(r.sent(kLan, 0).size() == 1);
  r.poll(1);  // worker 1 reads the removal
  CHECK(r.worker(1).flows->size() == 0);

  // The client tries another address of the service from the same port; the
  // kernel's table no longer holds the reply tuple, so the port stays.
  r.receive(kLan, client_tcp(r, "198.19.5.6", 40000, 80, 0x02), 1);
  auto out = r.sent(kWan, 1);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src_port) == 40000);
  r.poll(0);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12), 0);
  r.poll(1);
  out = r.sent(kLan, 1);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src.v4()) == addr("198.19.5.6"));
}

namespace {

// The randomized test below: services that share a backend (one of them
// masqueraded, as a NodePort), one client reusing a handful of ports, over
// TCP (port 80 to 8080) and UDP (53 to 5300).
struct Service {
  const char* vip;
  const char* backend;
  bool masquerade;
};
constexpr Service kSharedServices[] = {{"198.19.5.5", "198.19.9.11", false},
                                       {"198.19.5.6", "198.19.9.11", false},
                                       {"198.19.5.7", "198.19.9.12", false},
                                       {"198.19.5.8", "198.19.9.11", true}};
constexpr uint16_t kServicePort[2] = {80, 53}, kBackendPort[2] = {8080, 5300};  // [udp]

std::string shared_service_rules() {
  std::string text = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";
  for (const Service& s : kSharedServices) {
    for (int udp = 0; udp < 2; ++udp) {
      const std::string proto = udp ? "udp" : "tcp";
      const std::string match = std::string("-A PREROUTING -d ") + s.vip + "/32 -p " + proto +
                                " -m " + proto + " --dport " + std::to_string(kServicePort[udp]);
      if (s.masquerade) text += match + " -j MARK --set-xmark 0x4000/0x4000\n";
      text += match + " -j DNAT --to-destination " + s.backend + ":" +
              std::to_string(kBackendPort[udp]) + "\n";
    }
  }
  return text + "-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE\nCOMMIT\n";
}

// One connection (a UDP flow: one client socket's datagrams to one service)
// as the client and the backend see it, and what of it the kernel's
// conntrack table would still hold.
struct ModelConn {
  int service = 0;
  bool udp = false;
  uint16_t client_port = 0;
  uint32_t seen_src = 0;   // the backend sees it from this address...
  uint16_t seen_port = 0;  // ... and port
  enum { kSynSent, kEstablished, kClosed } state = kSynSent;
  bool holds_tuple = false;  // its conntrack exists (TIME_WAIT included; UDP: always, here)
};

// Drives n workers the way the wire would: every frame lands on the queue
// its tuple hashes to (a random one per tuple), then the workers poll, in
// random order, until handovers and stub messages have settled; checks what
// leaves against the kernel's behaviour.
class SharedBackendModel {
 public:
  SharedBackendModel(RingRouter& r, uint16_t workers, uint64_t seed)
      : r_(r), n_(workers), rng_(seed) {}

  // One step: open, answer, refuse, exchange data or close a TCP
  // connection; send a datagram, answer it or refuse it (ICMP); now and
  // then the same rules applied again (a new generation, as a reload).
  void step() {
    if (pick(16) == 0) {
      load_rules(r_, shared_service_rules());
      ++reloads_;
    }
    std::vector<size_t> syn_sent, established, udp;
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (conns_[i].udp) {
        udp.push_back(i);
      } else if (conns_[i].state == ModelConn::kSynSent) {
        syn_sent.push_back(i);
      } else if (conns_[i].state == ModelConn::kEstablished) {
        established.push_back(i);
      }
    }
    const unsigned action = pick(6);
    if (action == 4 || (action == 5 && udp.empty())) return datagram();
    if (action == 5) return answer_datagram(udp[pick(udp.size())], pick(3) != 0);
    if (action == 0 || (syn_sent.empty() && established.empty())) return open();
    if (action == 1 && !syn_sent.empty()) {
      return answer(syn_sent[pick(syn_sent.size())], pick(4) != 0);
    }
    if (!established.empty()) {
      if (action == 2) return exchange(established[pick(established.size())]);
      return close(established[pick(established.size())]);
    }
    answer(syn_sent[pick(syn_sent.size())], true);
  }

  size_t moved_ports() const { return moved_; }
  size_t reopened() const { return reopened_; }
  size_t refused() const { return refused_; }
  size_t icmp_errors() const { return icmp_errors_; }
  size_t reloads() const { return reloads_; }

 private:
  unsigned pick(size_t n) { return static_cast<unsigned>(rng_() % n); }

  // The queue a NIC's RSS would pick: fixed per tuple, drawn at random the
  // first time the tuple is seen.
  uint16_t queue_of(const Frame& f) {
    const auto m = parsed(f);
    const auto key =
        std::make_tuple(m.tuple.src.v4(), m.tuple.src_port, m.tuple.dst.v4(), m.tuple.dst_port);
    auto it = queues_.find(key);
    if (it == queues_.end()) it = queues_.emplace(key, static_cast<uint16_t>(pick(n_))).first;
    return it->second;
  }

  void deliver(uint16_t port, const Frame& f) {
    r_.put(port, f, queue_of(f));
    for (int round = 0; round < 3; ++round) {
      std::vector<uint16_t> order(n_);
      for (uint16_t q = 0; q < n_; ++q) order[q] = q;
      std::shuffle(order.begin(), order.end(), rng_);
      for (uint16_t q : order) r_.poll(q);
    }
  }

  // The one frame the router sent for the last delivery, on `port`.
  Frame only_output(uint16_t port) {
    std::vector<Frame> out, other;
    for (uint16_t q = 0; q < n_; ++q) {
      for (auto& f : r_.sent(port, q)) out.push_back(std::move(f));
      for (auto& f : r_.sent(static_cast<uint16_t>(1 - port), q)) other.push_back(std::move(f));
    }
    CHECK(other.empty());
    REQUIRE(out.size() == 1);
    CHECK(transport_checksum_ok(out[0]));
    return out[0];
  }

  Frame from_client(const ModelConn& c, uint8_t flags) {
    PacketBuilder b;
    b.eth(kClientMac, r_.mac(kLan)).ipv4("198.18.1.2", kSharedServices[c.service].vip);
    if (c.udp) return b.udp(c.client_port, kServicePort[1]).payload("query").build();
    return b.tcp(c.client_port, kServicePort[0], flags).build();
  }
  Frame from_backend(const ModelConn& c, uint8_t flags) {
    PacketBuilder b;
    b.eth(kServerMac, r_.mac(kWan))
        .ipv4(kSharedServices[c.service].backend, net::format_ipv4(c.seen_src));
    if (c.udp) return b.udp(kBackendPort[1], c.seen_port).payload("answer").build();
    return b.tcp(kBackendPort[0], c.seen_port, flags).build();
  }

  // A frame the backend should receive: the connection as it sees it.
  Frame expect_at_backend(const ModelConn& c, uint8_t flags) {
    const Frame f = only_output(kWan);
    const auto m = parsed(f);
    CHECK(net::to_host(m.tuple.src.v4()) == c.seen_src);
    CHECK(net::to_host(m.tuple.src_port) == c.seen_port);
    CHECK(net::to_host(m.tuple.dst.v4()) == addr(kSharedServices[c.service].backend));
    CHECK(net::to_host(m.tuple.dst_port) == kBackendPort[c.udp]);
    if (!c.udp) CHECK(m.tcp_flags == flags);
    return f;
  }
  // A frame the client should receive: from the service it asked.
  void expect_at_client(const ModelConn& c, uint8_t flags) {
    const auto m = parsed(only_output(kLan));
    CHECK(net::to_host(m.tuple.src.v4()) == addr(kSharedServices[c.service].vip));
    CHECK(net::to_host(m.tuple.src_port) == kServicePort[c.udp]);
    CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
    CHECK(net::to_host(m.tuple.dst_port) == c.client_port);
    if (!c.udp) CHECK(m.tcp_flags == flags);
  }

  bool tuple_held(const ModelConn& c, uint16_t port) const {
    for (const auto& o : conns_) {
      if (o.holds_tuple && o.udp == c.udp &&
          std::strcmp(kSharedServices[o.service].backend, kSharedServices[c.service].backend) ==
              0 &&
          o.seen_src == c.seen_src && o.seen_port == port) {
        return true;
      }
    }
    return false;
  }

  // The first packet of a connection left for the backend: the translation
  // netfilter would choose.
  void first_packet_left(ModelConn& c, const Frame& f) {
    const Service& svc = kSharedServices[c.service];
    const auto m = parsed(f);
    c.seen_src = net::to_host(m.tuple.src.v4());
    const uint16_t port = net::to_host(m.tuple.src_port);
    CHECK(net::to_host(m.tuple.dst.v4()) == addr(svc.backend));
    CHECK(net::to_host(m.tuple.dst_port) == kBackendPort[c.udp]);
    if (svc.masquerade) {
      CHECK(c.seen_src == addr("198.18.2.1"));
    } else {
      // netfilter's null binding: the port moves only when the reply tuple
      // is held by another conntrack.
      CHECK(c.seen_src == addr("198.18.1.2"));
      if (tuple_held(c, c.client_port)) {
        CHECK(port != c.client_port);
        ++moved_;
      } else {
        CHECK(port == c.client_port);
      }
    }
    CHECK_FALSE(tuple_held(c, port));
    c.seen_port = port;
    c.holds_tuple = true;
  }

  void open() {
    ModelConn c;
    c.service = static_cast<int>(pick(std::size(kSharedServices)));
    c.client_port = static_cast<uint16_t>(40000 + pick(4));
    // The client's socket for this 4-tuple must be gone; a closed
    // connection's conntrack in TIME_WAIT is reopened by the new SYN.
    for (auto& old : conns_) {
      if (old.udp || old.service != c.service || old.client_port != c.client_port) continue;
      if (old.state != ModelConn::kClosed) return;
      if (old.holds_tuple) ++reopened_;
      old.holds_tuple = false;
    }
    deliver(kLan, from_client(c, 0x02));
    first_packet_left(c, only_output(kWan));
    conns_.push_back(c);
  }

  // A datagram from one of the client's ports: a new flow, or one more of
  // a flow it already has (which keeps its translation).
  void datagram() {
    ModelConn c;
    c.udp = true;
    c.service = static_cast<int>(pick(std::size(kSharedServices)));
    c.client_port = static_cast<uint16_t>(40000 + pick(4));
    for (const auto& old : conns_) {
      if (old.udp && old.service == c.service && old.client_port == c.client_port) {
        deliver(kLan, from_client(old, 0));
        expect_at_backend(old, 0);
        return;
      }
    }
    deliver(kLan, from_client(c, 0));
    first_packet_left(c, only_output(kWan));
    conns_.push_back(c);
  }

  // The backend answers the flow, or refuses it with an ICMP port
  // unreachable quoting the datagram as it got it: the client gets the error
  // from the service address, quoting what it sent (RELATED, translated).
  void answer_datagram(size_t i, bool answer) {
    const ModelConn& c = conns_[i];
    if (answer) {
      deliver(kWan, from_backend(c, 0));
      expect_at_client(c, 0);
      return;
    }
    deliver(kLan, from_client(c, 0));
    const Frame got = expect_at_backend(c, 0);
    const std::vector<uint8_t> quote(got.begin() + 14, got.end());
    deliver(kWan, PacketBuilder()
                      .eth(kServerMac, r_.mac(kWan))
                      .ipv4(kSharedServices[c.service].backend, net::format_ipv4(c.seen_src))
                      .icmp(3, 3)
                      .payload(quote)
                      .build());
    const Frame out = only_output(kLan);
    const auto m = parsed(out);
    CHECK(m.icmp_type == 3);
    CHECK(net::to_host(m.tuple.src.v4()) == addr(kSharedServices[c.service].vip));
    CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
    net::FiveTuple quoted;
    REQUIRE(dataplane::icmp_quoted_tuple(out.data() + 14, m, quoted));
    CHECK(net::to_host(quoted.src_port) == c.client_port);
    CHECK(net::to_host(quoted.dst.v4()) == addr(kSharedServices[c.service].vip));
    CHECK(net::to_host(quoted.dst_port) == kServicePort[1]);
    CHECK(net::checksum(out.data() + 34, out.size() - 34) == 0);
    ++icmp_errors_;
  }

  // The backend accepts (SYN/ACK) or refuses (RST: the conntrack dies).
  void answer(size_t i, bool accept) {
    ModelConn& c = conns_[i];
    deliver(kWan, from_backend(c, accept ? 0x12 : 0x14));
    expect_at_client(c, accept ? 0x12 : 0x14);
    if (accept) {
      deliver(kLan, from_client(c, 0x10));
      expect_at_backend(c, 0x10);
      c.state = ModelConn::kEstablished;
    } else {
      c.state = ModelConn::kClosed;
      c.holds_tuple = false;
      ++refused_;
    }
  }

  void exchange(size_t i) {
    const ModelConn& c = conns_[i];
    deliver(kLan, from_client(c, 0x18));
    expect_at_backend(c, 0x18);
    deliver(kWan, from_backend(c, 0x18));
    expect_at_client(c, 0x18);
  }

  // The backend closes first (the client ends with no TIME_WAIT of its own,
  // so it may reuse the port at once); the conntrack stays in TIME_WAIT.
  void close(size_t i) {
    ModelConn& c = conns_[i];
    deliver(kWan, from_backend(c, 0x11));
    expect_at_client(c, 0x11);
    deliver(kLan, from_client(c, 0x11));
    expect_at_backend(c, 0x11);
    deliver(kWan, from_backend(c, 0x10));
    expect_at_client(c, 0x10);
    c.state = ModelConn::kClosed;
  }

  RingRouter& r_;
  uint16_t n_;
  std::mt19937_64 rng_;
  std::vector<ModelConn> conns_;
  std::map<std::tuple<net::be32, net::be16, net::be32, net::be16>, uint16_t> queues_;
  size_t moved_ = 0, reopened_ = 0, refused_ = 0, icmp_errors_ = 0, reloads_ = 0;
};

}  // namespace

TEST_CASE("with 2 and 3 workers, random connections through services sharing a backend behave as the kernel's") {
  // Each tuple lands on a random worker; the client reuses four ports over
  // four services (three on one backend, one of those masqueraded), over TCP
  // and UDP. What leaves must be what the kernel would send: the backend
  // sees each connection on the client's port unless another conntrack
  // holds that reply tuple (then the port moves), every reply and ICMP error
  // reaches the client from the address it asked, nothing is INVALID or
  // dropped, also across rule reloads.
  const uint64_t seed = Catch::rngSeed() ? Catch::rngSeed() : 20261205;
  for (uint16_t workers : {2, 3}) {
    INFO("seed " << seed << ", " << workers << " workers");
    RingRouter r(kStaticNeighbours, workers);
    load_rules(r, shared_service_rules());
    SharedBackendModel model(r, workers, seed + workers);
    for (int step = 0; step < 500; ++step) model.step();
    CHECK(model.moved_ports() > 0);  // the cases the test is for happened
    CHECK(model.reopened() > 0);
    CHECK(model.refused() > 0);
    CHECK(model.icmp_errors() > 0);
    CHECK(model.reloads() > 0);
    for (uint16_t q = 0; q < workers; ++q) {
      const auto& c = r.worker(q).counters;
      CHECK(c.ct_invalid.get() == 0);
      CHECK(c.redirects_lost.get() == 0);
      for (size_t d = 1; d < c.drops.size(); ++d) CHECK(c.drops[d].get() == 0);
      CHECK(r.worker(q).flows->stats().clashed.get() == 0);
      CHECK(r.worker(q).flows->stats().departures_lost.get() == 0);
    }
  }
}

TEST_CASE("with two workers the stubs of an established connection survive a flood, as the ASSURED flow itself does") {
  // netfilter's early drop spares ASSURED conntracks. The flow's owner
  // spares it; the other worker must spare its stub too, or the replies of
  // an established connection meet nothing there once a flood fills its table.
  RingRouter r(kStaticNeighbours + std::string("conntrack = { max_flows = 2048; };\n"), 2);
  load_rules(r, kTwoServicesOneBackend);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02), 0);
  r.poll(1);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x12), 1);
  r.poll(0);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x10), 0);  // ESTABLISHED, ASSURED
  r.poll(1);
  r.sent(kLan, 0);
  r.sent(kWan, 0);
  // Worker 1 sees a flood of new connections nobody answers.
  for (uint16_t port = 1000; port < 5000; ++port) {
    r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.3", "198.19.7.7")
                        .tcp(port, 80, 0x02).build(), 1);
    r.sent(kWan, 1);
  }
  CHECK(r.worker(1).flows->stats().early_dropped.get() > 2000);
  // The established connection's data still reaches the client.
  r.receive(kWan, server_tcp(r, "198.18.2.2", 8080, "198.18.1.2", 40000, 0x18), 1);
  r.poll(0);
  const auto out = r.sent(kLan, 0);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src.v4()) == addr("198.19.5.5"));
  CHECK(r.worker(1).counters.ct_invalid.get() == 0);
}

TEST_CASE("with two workers the reply of a masqueraded connection is steered by its port") {
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan -j MASQUERADE\nCOMMIT\n");
  for (uint16_t q = 0; q < 2; ++q) {
    r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2")
                        .udp(static_cast<uint16_t>(6000 + q), 53).build(), q);
    auto out = r.sent(kWan, q);
    REQUIRE(out.size() == 1);
    const uint16_t port = net::to_host(parsed(out[0]).tuple.src_port);
    CHECK(port % 2 == q);  // worker q hands out ports of its slice
    const uint16_t other = static_cast<uint16_t>(1 - q);
    r.receive(kWan, PacketBuilder().eth(kServerMac, r.mac(kWan)).ipv4("198.18.2.2", "198.18.2.1").udp(53, port).build(),
              other);
    r.poll(q);
    auto back = r.sent(kLan, q);
    REQUIRE(back.size() == 1);
    CHECK(net::to_host(parsed(back[0]).tuple.dst_port) == 6000 + q);
  }
}

TEST_CASE("with two workers SNAT to a single port takes it on either worker, and its replies come back through stubs") {
  // --to-source A:P with one port: the kernel takes P for every connection
  // whose reply tuple stays unique, i.e. one per destination. Port 40001
  // lies in worker 1's slice: a connection worker 0 received was dropped
  // (nat_no_port) before worker 0 could take ports outside its slice.
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, "*nat\n:POSTROUTING ACCEPT [0:0]\n"
                "-A POSTROUTING -o wan -p tcp -j SNAT --to-source 198.18.2.1:40001\nCOMMIT\n");
  r.receive(kLan, client_tcp(r, "198.18.2.2", 5555, 80, 0x02), 0);
  auto out = r.sent(kWan, 0);
  REQUIRE(out.size() == 1);
  auto m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.2.1"));
  CHECK(net::to_host(m.tuple.src_port) == 40001);
  CHECK(transport_checksum_ok(out[0]));
  CHECK(r.worker(0).counters.redirects_sent.get() == 1);  // the port does not say worker 0: a stub does
  r.poll(1);

  // The SYN/ACK lands on worker 1, whose port it is, and goes to the owner.
  r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.2.1", 40001, 0x12), 1);
  CHECK(r.worker(1).counters.handed_over.get() == 1);
  r.poll(0);
  out = r.sent(kLan, 0);
  REQUIRE(out.size() == 1);
  m = parsed(out[0]);
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
  CHECK(net::to_host(m.tuple.dst_port) == 5555);
  CHECK(transport_checksum_ok(out[0]));

  // A second connection to the same destination would share the reply
  // tuple: dropped, as the kernel drops it when it confirms the conntrack.
  // Worker 1 knows the tuple from the stub.
  r.receive(kLan, client_tcp(r, "198.18.2.2", 5556, 80, 0x02), 1);
  CHECK(r.sent(kWan, 1).empty());
  CHECK(r.drops(net::DropReason::kNatNoPort, 1) == 1);
  // Another destination port: the same source port again. On worker 1 the
  // port is its own, and the reply needs no stub.
  r.receive(kLan, client_tcp(r, "198.18.2.2", 5557, 443, 0x02), 1);
  out = r.sent(kWan, 1);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.src_port) == 40001);
  CHECK(r.worker(1).counters.redirects_sent.get() == 0);
  r.receive(kWan, server_tcp(r, "198.18.2.2", 443, "198.18.2.1", 40001, 0x12), 0);
  CHECK(r.worker(0).counters.handed_over.get() == 1);  // steered by its port
  r.poll(1);
  out = r.sent(kLan, 1);
  REQUIRE(out.size() == 1);
  CHECK(net::to_host(parsed(out[0]).tuple.dst_port) == 5557);
  CHECK(r.worker(0).counters.ct_invalid.get() + r.worker(1).counters.ct_invalid.get() == 0);
}

TEST_CASE("with two workers SNAT to a port range takes the other worker's ports once its own are taken, as the kernel takes the whole range") {
  RingRouter r(kStaticNeighbours, 2);
  load_rules(r, "*nat\n:POSTROUTING ACCEPT [0:0]\n"
                "-A POSTROUTING -o wan -p tcp -j SNAT --to-source 198.18.2.1:40000-40003\nCOMMIT\n");
  std::map<uint16_t, uint16_t> client_of;  // translated port -> client port
  for (uint16_t k = 0; k < 4; ++k) {
    r.receive(kLan, client_tcp(r, "198.18.2.2", static_cast<uint16_t>(6000 + k), 80, 0x02), 0);
    auto out = r.sent(kWan, 0);
    REQUIRE(out.size() == 1);
    const uint16_t port = net::to_host(parsed(out[0]).tuple.src_port);
    CHECK(port >= 40000);
    CHECK(port <= 40003);
    // Worker 0's own ports (40000, 40002) first.
    if (k < 2) CHECK(port % 2 == 0);
    client_of[port] = static_cast<uint16_t>(6000 + k);
  }
  CHECK(client_of.size() == 4);
  CHECK(r.worker(0).counters.redirects_sent.get() == 2);  // a stub for each port of worker 1's
  r.receive(kLan, client_tcp(r, "198.18.2.2", 6004, 80, 0x02), 0);
  CHECK(r.sent(kWan, 0).empty());
  CHECK(r.drops(net::DropReason::kNatNoPort, 0) == 1);  // the range is full

  // Every reply lands on worker 1: steered by port or by stub to worker 0.
  r.poll(1);
  for (const auto& [port, client] : client_of) {
    r.receive(kWan, server_tcp(r, "198.18.2.2", 80, "198.18.2.1", port, 0x12), 1);
  }
  CHECK(r.worker(1).counters.handed_over.get() == 4);
  r.poll(0);
  auto back = r.sent(kLan, 0);
  REQUIRE(back.size() == 4);
  std::set<uint16_t> clients;
  for (const Frame& f : back) {
    CHECK(transport_checksum_ok(f));
    clients.insert(net::to_host(parsed(f).tuple.dst_port));
  }
  CHECK(clients == std::set<uint16_t>{6000, 6001, 6002, 6003});
  CHECK(r.worker(0).counters.ct_invalid.get() + r.worker(1).counters.ct_invalid.get() == 0);
}

TEST_CASE("hairpin: a client reaching a service whose backend sits behind the same port gets answers through dpgate") {
  // kube-proxy marks such traffic for masquerade: the backend then answers
  // dpgate, not the client directly, and dpgate translates both ways.
  RingRouter r(kStaticNeighbours);
  load_rules(r, "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.1.7:8080\n"
                "-A POSTROUTING -s 198.18.1.0/24 -d 198.18.1.7/32 -j MASQUERADE\nCOMMIT\n");
  const MacAddr backend_mac = add_lan_host(r);
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02));
  auto out = r.sent(kLan);  // back out of the port it came in on
  REQUIRE(out.size() == 1);
  auto m = parsed(out[0]);
  CHECK(dst_mac(out[0]) == backend_mac);
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.7"));
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.18.1.1"));  // masqueraded behind the LAN address
  const uint16_t port = net::to_host(m.tuple.src_port);
  CHECK(transport_checksum_ok(out[0]));
  r.receive(kLan, PacketBuilder().eth(backend_mac, r.mac(kLan)).ipv4("198.18.1.7", "198.18.1.1")
                      .tcp(8080, port, 0x12).build());
  out = r.sent(kLan);
  REQUIRE(out.size() == 1);
  m = parsed(out[0]);
  CHECK(dst_mac(out[0]) == kClientMac);
  CHECK(net::to_host(m.tuple.src.v4()) == addr("198.19.5.5"));
  CHECK(net::to_host(m.tuple.src_port) == 80);
  CHECK(net::to_host(m.tuple.dst.v4()) == addr("198.18.1.2"));
  CHECK(net::to_host(m.tuple.dst_port) == 40000);
  CHECK(transport_checksum_ok(out[0]));
}

// ---- the LOG target ------------------------------------------------------------

namespace {

struct LoggedLine {
  dataplane::LogRecord record;
  std::string line;
};

// Collects the LOG records the control thread drains, instead of rte_log.
std::vector<LoggedLine>& capture_log(RingRouter& r) {
  static std::vector<LoggedLine> lines;
  lines.clear();
  r.runtime().set_log_sink([](const dataplane::LogRecord& rec, const std::string& line) { lines.push_back({rec, line}); });
  return lines;
}

uint64_t log_counter(RingRouter& r, dataplane::Counter dataplane::WorkerCounters::*c) {
  return (r.worker().counters.*c).get();
}

}  // namespace

TEST_CASE("a packet crossing a LOG rule is forwarded and logged once, as the kernel prints it") {
  RingRouter r(kStaticNeighbours);
  auto& logged = capture_log(r);
  load_rules(r, "*filter\n:FORWARD ACCEPT [0:0]\n"
                "-A FORWARD -p tcp -m tcp --dport 80 -j LOG --log-prefix \"web: \"\n"
                "COMMIT\n");
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2").ip_id(54321)
                      .dont_fragment().tcp(40000, 80, 0x02).build());
  CHECK(r.sent(kWan).size() == 1);  // LOG does not decide: the policy accepts
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].line == "web: IN=lan OUT=wan MAC=" + net::format_mac(r.mac(kLan)) +
                              ":02:cc:00:00:00:02:08:00 SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x00 PREC=0x00 "
                              "TTL=63 ID=54321 DF PROTO=TCP SPT=40000 DPT=80 WINDOW=65535 RES=0x00 SYN URGP=0 ");
  CHECK(logged[0].record.level == 4);
  CHECK(logged[0].record.hook == rules::Hook::kForward);
  CHECK(rule_packets(r, "-j LOG") == 1);  // the rule's counters count as for any rule
  CHECK(log_counter(r, &dataplane::WorkerCounters::log_records) == 1);
  CHECK(r.runtime().log_emitted() == 1);

  r.receive(kLan, client_tcp(r, "198.18.2.2", 40000, 443, 0x02));
  CHECK(r.sent(kWan).size() == 1);
  CHECK(logged.size() == 1);  // another port: not logged
  CHECK_THAT(r.runtime().stats_text(), Catch::Contains("  log: records 1 suppressed 0 ring_full 0\n"));
  CHECK_THAT(r.runtime().metrics_text(), Catch::Contains("dpgate_log_records_total{worker=\"0\"} 1\n"));
  CHECK_THAT(r.runtime().metrics_text(), Catch::Contains("dpgate_log_emitted_total 1\n"));
}

TEST_CASE("LOG in each hook shows the packet as that hook sees it: before DNAT, after it, with the mark") {
  RingRouter r(kStaticNeighbours);
  auto& logged = capture_log(r);
  load_rules(r, "*mangle\n:PREROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -j MARK --set-xmark 0x10/0xffffffff\nCOMMIT\n"
                "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
                "-A PREROUTING -d 198.19.5.5/32 -j LOG --log-prefix \"pre: \" --log-level 6\n"
                "-A PREROUTING -d 198.19.5.5/32 -p tcp -j DNAT --to-destination 198.18.2.2:8080\n"
                "-A POSTROUTING -j LOG --log-prefix \"post: \" --log-tcp-sequence\n"
                "-A POSTROUTING -o wan -j MASQUERADE\nCOMMIT\n"
                "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j LOG --log-prefix \"fwd: \"\nCOMMIT\n");
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x02));
  CHECK(r.sent(kWan).size() == 1);
  REQUIRE(logged.size() == 3);
  CHECK_THAT(logged[0].line, Catch::StartsWith("pre: IN=lan OUT= MAC="));
  CHECK_THAT(logged[0].line, Catch::Contains(" SRC=198.18.1.2 DST=198.19.5.5 LEN=40 TOS=0x00 PREC=0x00 TTL=64 "));
  CHECK_THAT(logged[0].line, Catch::EndsWith(" SPT=40000 DPT=80 WINDOW=65535 RES=0x00 SYN URGP=0 MARK=0x10 "));
  CHECK(logged[0].record.level == 6);
  CHECK_THAT(logged[1].line, Catch::StartsWith("fwd: IN=lan OUT=wan MAC="));
  CHECK_THAT(logged[1].line, Catch::Contains(" SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=63 "));
  CHECK_THAT(logged[1].line, Catch::Contains(" DPT=8080 "));
  CHECK_THAT(logged[2].line, Catch::StartsWith("post: IN=lan OUT=wan MAC="));
  CHECK_THAT(logged[2].line, Catch::Contains(" SRC=198.18.1.2 DST=198.18.2.2 "));  // MASQUERADE comes after
  CHECK_THAT(logged[2].line, Catch::Contains(" DPT=8080 SEQ=1 ACK=0 WINDOW=65535 "));

  // nat sees only a connection's first packet; filter sees every packet.
  r.receive(kLan, client_tcp(r, "198.19.5.5", 40000, 80, 0x10));
  REQUIRE(logged.size() == 4);
  CHECK_THAT(logged[3].line, Catch::StartsWith("fwd: "));
}

TEST_CASE("LOG in INPUT: no output interface, the TTL as received") {
  RingRouter r(kStaticNeighbours);
  auto& logged = capture_log(r);
  load_rules(r, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p icmp -j LOG --log-prefix \"in: \"\nCOMMIT\n");
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.1").ip_id(7)
                      .icmp(8, 0, 0x1234, 1).build());
  CHECK(r.sent(kLan).size() == 1);  // the echo reply
  REQUIRE(logged.size() == 1);
  CHECK_THAT(logged[0].line, Catch::StartsWith("in: IN=lan OUT= MAC="));
  CHECK_THAT(logged[0].line, Catch::EndsWith(" SRC=198.18.1.2 DST=198.18.1.1 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=7 "
                                             "PROTO=ICMP TYPE=8 CODE=0 ID=4660 SEQ=1 "));
}

TEST_CASE("LOG in OUTPUT and POSTROUTING for what the router sends: no input interface, its own TTL") {
  // The kernel logs its echo reply in OUTPUT and POSTROUTING as
  // "IN= OUT=lan SRC=<router> ... TTL=64": no MAC (no input device), and
  // the TTL it sends with, not one less as for a forwarded packet.
  RingRouter r(kStaticNeighbours);
  auto& logged = capture_log(r);
  load_rules(r, "*mangle\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -p icmp -j LOG --log-prefix \"post: \"\n"
                "COMMIT\n*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p icmp -j LOG --log-prefix \"out: \"\nCOMMIT\n");
  r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.1.1").ip_id(7)
                      .icmp(8, 0, 0x1234, 1).build());
  REQUIRE(r.sent(kLan).size() == 1);  // the echo reply
  REQUIRE(logged.size() == 2);
  CHECK(logged[0].record.hook == rules::Hook::kOutput);
  CHECK(logged[1].record.hook == rules::Hook::kPostrouting);
  for (const auto& [prefix, l] : {std::pair{"out: ", logged[0]}, std::pair{"post: ", logged[1]}}) {
    CHECK_THAT(l.line, Catch::StartsWith(std::string(prefix) + "IN= OUT=lan SRC=198.18.1.1 DST=198.18.1.2 LEN=28 "
                                                                "TOS=0x00 PREC=0x00 TTL=64 ID="));
    CHECK_THAT(l.line, Catch::EndsWith(" PROTO=ICMP TYPE=0 CODE=0 ID=4660 SEQ=1 "));
  }
  CHECK(rule_packets(r, "-j LOG --log-prefix \"out: \"") == 1);
  CHECK(log_counter(r, &dataplane::WorkerCounters::log_records) == 2);
}

TEST_CASE("LOG records are rate-limited per worker; the rule still counts every packet") {
  RingRouter r(std::string(kStaticNeighbours) + "log = { rate = 1; burst = 3; };\n");
  auto& logged = capture_log(r);
  load_rules(r, "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p udp -j LOG --log-prefix \"udp: \"\nCOMMIT\n");
  for (int i = 0; i < 10; ++i) {
    r.receive(kLan, PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2").udp(5000 + i, 53).build());
  }
  CHECK(r.sent(kWan).size() == 10);
  CHECK(logged.size() == 3);
  CHECK(log_counter(r, &dataplane::WorkerCounters::log_records) == 3);
  CHECK(log_counter(r, &dataplane::WorkerCounters::log_suppressed) == 7);
  CHECK(rule_packets(r, "-j LOG") == 10);
  CHECK_THAT(r.runtime().metrics_text(), Catch::Contains("dpgate_log_suppressed_total{worker=\"0\"} 7\n"));
}

TEST_CASE("a log ring the control thread has not drained drops records and counts them") {
  RingRouter r(std::string(kStaticNeighbours) + "log = { rate = 100000; burst = 1000; ring_size = 64; };\n");
  auto& logged = capture_log(r);
  load_rules(r, "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j LOG\nCOMMIT\n");
  // Three bursts straight into the worker, no control-thread turn between them.
  for (int burst = 0; burst < 3; ++burst) {
    rte_mbuf* pkts[32];
    for (int i = 0; i < 32; ++i) {
      const Frame f = PacketBuilder().eth(kClientMac, r.mac(kLan)).ipv4("198.18.1.2", "198.18.2.2")
                          .udp(static_cast<uint16_t>(1000 + burst * 32 + i), 53).build();
      pkts[i] = rte_pktmbuf_alloc(r.runtime().router().pool);
      REQUIRE(pkts[i] != nullptr);
      std::memcpy(rte_pktmbuf_append(pkts[i], static_cast<uint16_t>(f.size())), f.data(), f.size());
    }
    dataplane::worker_process_burst(r.worker(), kLan, pkts, 32);
  }
  dataplane::worker_flush(r.worker());
  CHECK(log_counter(r, &dataplane::WorkerCounters::log_records) == 64);
  CHECK(log_counter(r, &dataplane::WorkerCounters::log_ring_full) == 32);
  r.runtime().service(rte_get_tsc_cycles());
  CHECK(logged.size() == 64);
  CHECK(r.runtime().log_emitted() == 64);
  CHECK(r.sent(kWan).size() == 96);  // logging never holds a packet back
}
