// What the fuzzers and the malformed corpus found in the forwarding pipeline,
// as plain pipeline tests on net_ring ports (the fuzz harness's router, with
// a default route added). They fail until the behaviour they describe is
// fixed, then stay as regression tests.
#include <catch2/catch.hpp>

#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dpgate/control/runtime.hpp"
#include "dpgate/net/builder.hpp"
#include "dpgate/net/drop_reason.hpp"
#include "ring_router.hpp"

using namespace dpgate;
using net::PacketBuilder;
using Frame = std::vector<uint8_t>;

namespace {

// ring_router.hpp's router (lan 198.18.1.1/24 + 198.18.3.1/24, wan
// 198.18.2.1/24, 198.19.0.0/16 via 198.18.2.2, 198.20.0.0/16 on-link on wan)
// plus a default route via 198.18.2.2.
class FindingsRouter {
 public:
  FindingsRouter() {
    static int serial = 0;
    const std::string id = "find" + std::to_string(serial++);
    std::string text = fuzz::kRingRouterConfig;
    for (uint16_t p = 0; p < 2; ++p) {
      const std::string name = id + (p == fuzz::kLan ? "lan" : "wan");
      rx_[p] = rte_ring_create((name + "rx").c_str(), 256, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      tx_[p] = rte_ring_create((name + "tx").c_str(), 256, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      REQUIRE(rte_eth_from_rings(name.c_str(), &rx_[p], 1, &tx_[p], 1, 0) >= 0);
      const std::string fuzz_name = p == fuzz::kLan ? "fuzzlan" : "fuzzwan";
      text.replace(text.find(fuzz_name), fuzz_name.size(), name);
    }
    const std::string routes = "routes = (\n";
    text.replace(text.find(routes), routes.size(),
                 routes + "  { prefix = \"0.0.0.0/0\"; gateway = \"198.18.2.2\"; port = \"wan\"; },\n");
    auto cfg = control::load_config_text(text, "findings.conf");
    if (auto* e = std::get_if<control::ConfigError>(&cfg)) FAIL(e->to_string());
    auto rt = control::Runtime::create(std::get<control::Config>(cfg));
    if (auto* e = std::get_if<std::string>(&rt)) FAIL(*e);
    runtime_ = std::move(std::get<std::unique_ptr<control::Runtime>>(rt));
  }

  ~FindingsRouter() {
    runtime_.reset();
    for (uint16_t p = 0; p < 2; ++p) {
      rte_ring_free(rx_[p]);
      rte_ring_free(tx_[p]);
    }
  }

  net::MacAddr mac(uint16_t port) { return runtime_->router().ports[port].mac; }

  // Puts the frame on the port's RX ring; polls the worker and the control thread twice.
  void receive(uint16_t port, const Frame& f) {
    rte_mbuf* m = rte_pktmbuf_alloc(runtime_->router().pool);
    REQUIRE(m != nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    REQUIRE(rte_ring_enqueue(rx_[port], m) == 0);
    for (int i = 0; i < 2; ++i) {
      dataplane::worker_poll(*runtime_->workers()[0]);
      runtime_->service(rte_get_tsc_cycles());
    }
  }

  std::vector<Frame> sent(uint16_t port) {
    std::vector<Frame> out;
    void* obj;
    while (rte_ring_dequeue(tx_[port], &obj) == 0) {
      auto* m = static_cast<rte_mbuf*>(obj);
      const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out.emplace_back(d, d + rte_pktmbuf_data_len(m));
      rte_pktmbuf_free(m);
    }
    return out;
  }

  uint64_t drops(net::DropReason r) { return runtime_->workers()[0]->counters.drops[static_cast<size_t>(r)].get(); }
  std::string stats() { return runtime_->stats_text(); }

 private:
  rte_ring* rx_[2] = {};
  rte_ring* tx_[2] = {};
  std::unique_ptr<control::Runtime> runtime_;
};

const net::MacAddr kNeighbourMac{{0x02, 0x55, 0, 0, 0, 0x05}};

}  // namespace

TEST_CASE("a next hop on an on-link route is learned from its ARP reply and the waiting packet leaves") {
  // RFC 1812 / Linux: a route without a gateway makes every address in it a
  // neighbour of the port; the reply to our own who-has must resolve it.
  FindingsRouter r;
  const Frame in = PacketBuilder().eth(fuzz::kClientMac, r.mac(fuzz::kLan)).ipv4("198.18.1.2", "198.20.0.5")
                       .tcp(1000, 80).build();
  r.receive(fuzz::kLan, in);
  auto requests = r.sent(fuzz::kWan);
  REQUIRE(requests.size() == 1);  // who-has 198.20.0.5 tell 198.18.2.1
  r.receive(fuzz::kWan, PacketBuilder().eth(kNeighbourMac, r.mac(fuzz::kWan))
                            .arp(2, kNeighbourMac, "198.20.0.5", r.mac(fuzz::kWan), "198.18.2.1").build());
  auto out = r.sent(fuzz::kWan);
  INFO(r.stats());
  REQUIRE(out.size() == 1);
  CHECK(std::equal(kNeighbourMac.bytes.begin(), kNeighbourMac.bytes.end(), out[0].begin()));
}

TEST_CASE("a packet to 255.255.255.255 is neither forwarded nor answered with an ICMP error") {
  // RFC 1812 5.3.5.1: limited broadcasts are never forwarded; 4.3.2.7: no
  // ICMP error about a datagram sent to a broadcast address.
  FindingsRouter r;
  r.receive(fuzz::kLan, PacketBuilder().eth(fuzz::kClientMac, r.mac(fuzz::kLan))
                            .ipv4("198.18.1.2", "255.255.255.255").udp(68, 67).build());
  INFO(r.stats());
  CHECK(r.sent(fuzz::kWan).empty());
  CHECK(r.sent(fuzz::kLan).empty());
  CHECK(r.drops(net::DropReason::kMartianDestination) == 1);
}

TEST_CASE("a packet to a multicast group is neither forwarded nor answered with an ICMP error") {
  // dpgate is no multicast router (Linux without mrouted drops these), and
  // RFC 1812 4.3.2.7 forbids ICMP errors about multicast datagrams.
  FindingsRouter r;
  for (const char* group : {"224.0.0.251", "239.1.2.3"}) {
    r.receive(fuzz::kLan, PacketBuilder().eth(fuzz::kClientMac, r.mac(fuzz::kLan))
                              .ipv4("198.18.1.2", group).udp(5353, 5353).build());
  }
  INFO(r.stats());
  CHECK(r.sent(fuzz::kWan).empty());
  CHECK(r.sent(fuzz::kLan).empty());
  CHECK(r.drops(net::DropReason::kMartianDestination) == 2);
}

TEST_CASE("a packet from a connected network's directed broadcast address is a martian source") {
  // RFC 1812 5.3.7: a directed broadcast is not a valid source; Linux drops it
  // (fib_validate_source: RTN_BROADCAST source).
  FindingsRouter r;
  r.receive(fuzz::kLan, PacketBuilder().eth(fuzz::kClientMac, r.mac(fuzz::kLan))
                            .ipv4("198.18.1.255", "198.19.0.10").udp(1, 2).build());
  INFO(r.stats());
  CHECK(r.sent(fuzz::kWan).empty());
  CHECK(r.drops(net::DropReason::kMartianSource) == 1);
}
