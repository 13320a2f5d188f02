// The router the pipeline and control fuzzers drive and the pipeline seeds
// are built for: two net_ring ports with fixed MACs and addresses, and the
// record format that packs several frames into one fuzz input. Shared by
// pipeline_fuzz.cpp, control_fuzz.cpp and make_seeds.cpp only; test code,
// control thread.
#pragma once

#include <rte_eth_ring.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dpgate/net/addr.hpp"

namespace dpgate::fuzz {

// net_ring ports cannot take a configured MAC, so seeds address the router
// with these stand-ins and set kToPortMac: the harness writes the ingress
// port's real MAC over the destination.
inline constexpr net::MacAddr kLanMac{{0x02, 0xf0, 0, 0, 0, 0x01}};
inline constexpr net::MacAddr kWanMac{{0x02, 0xf0, 0, 0, 0, 0x02}};
inline constexpr net::MacAddr kClientMac{{0x02, 0xcc, 0, 0, 0, 0x02}};
inline constexpr net::MacAddr kServerMac{{0x02, 0x55, 0, 0, 0, 0x02}};
inline constexpr uint16_t kLan = 0, kWan = 1;
inline constexpr uint16_t kWanMtu = 1400;

// lan: 198.18.1.1/24 and 198.18.3.1/24; wan: 198.18.2.1/24, MTU 1400.
// 198.19.0.0/16 via 198.18.2.2 (a static neighbour), 198.20.0.0/16 on-link
// on wan (unresolved: exercises ARP requests and the pending queue), no
// default route (exercises Network Unreachable).
inline constexpr const char* kRingRouterConfig = R"(
workers = 1;
burst = 32;
rx_descriptors = 64;
tx_descriptors = 64;
mbuf_pool_size = 1023;
mbuf_cache_size = 0;
ports = (
  { name = "lan"; device = "net_ring_fuzzlan";
    addresses = [ "198.18.1.1/24", "198.18.3.1/24" ]; },
  { name = "wan"; device = "net_ring_fuzzwan";
    addresses = [ "198.18.2.1/24" ]; mtu = 1400; }
);
routes = (
  { prefix = "198.19.0.0/16"; gateway = "198.18.2.2"; port = "wan"; },
  { prefix = "198.20.0.0/16"; port = "wan"; }
);
neighbours = (
  { address = "198.18.2.2"; mac = "02:55:00:00:00:02"; port = "wan"; },
  { address = "198.18.1.2"; mac = "02:cc:00:00:00:02"; port = "lan"; }
);
icmp = { rate = 1000000; burst = 100000; };
arp = { queue = 8; };
)";

// The rings behind kRingRouterConfig's two ports: the harness puts frames on
// rx[port] for the port to receive and takes what it sent from tx[port].
struct RingPorts {
  std::array<rte_ring*, 2> rx{}, tx{};
};

// Creates the rings and the net_ring devices the config names ("net_ring_"
// + fuzzlan, fuzzwan). After rte_eal_init; once per process.
inline std::optional<std::string> open_ring_ports(RingPorts& out) {
  const char* names[2] = {"fuzzlan", "fuzzwan"};
  for (uint16_t p = 0; p < 2; ++p) {
    out.rx[p] = rte_ring_create((std::string(names[p]) + "rx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    out.tx[p] = rte_ring_create((std::string(names[p]) + "tx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (out.rx[p] == nullptr || out.tx[p] == nullptr) return std::string("rte_ring_create failed");
    if (rte_eth_from_rings(names[p], &out.rx[p], 1, &out.tx[p], 1, 0) < 0) {
      return std::string("rte_eth_from_rings failed");
    }
  }
  return std::nullopt;
}

// A fuzz input is a list of records: [flags][len lo][len hi][len bytes of
// frame]. flags bit 0 picks the ingress port (0 lan, 1 wan); bit 1
// (kToPortMac) replaces the destination MAC with the port's. A last record
// shorter than its length takes what is left.
inline constexpr size_t kMaxRecords = 16;
inline constexpr uint8_t kToPortMac = 2;

struct Record {
  uint16_t port = 0;
  bool to_port_mac = false;
  std::vector<uint8_t> frame;
};

inline std::vector<Record> decode_records(const uint8_t* data, size_t size) {
  std::vector<Record> out;
  size_t pos = 0;
  while (pos + 3 <= size && out.size() < kMaxRecords) {
    const uint16_t port = data[pos] & 1;
    const bool to_port_mac = (data[pos] & kToPortMac) != 0;
    const size_t len = data[pos + 1] | (size_t{data[pos + 2]} << 8);
    pos += 3;
    const size_t take = len < size - pos ? len : size - pos;
    out.push_back({port, to_port_mac, std::vector<uint8_t>(data + pos, data + pos + take)});
    pos += take;
  }
  return out;
}

// Sets kToPortMac when the frame is addressed to the port's stand-in MAC.
inline void encode_record(std::vector<uint8_t>& out, uint16_t port, const std::vector<uint8_t>& frame) {
  const net::MacAddr& stand_in = port == kLan ? kLanMac : kWanMac;
  const bool to_port = frame.size() >= 6 && std::equal(stand_in.bytes.begin(), stand_in.bytes.end(), frame.begin());
  out.push_back(static_cast<uint8_t>((port & 1) | (to_port ? kToPortMac : 0)));
  out.push_back(static_cast<uint8_t>(frame.size()));
  out.push_back(static_cast<uint8_t>(frame.size() >> 8));
  out.insert(out.end(), frame.begin(), frame.end());
}

}  // namespace dpgate::fuzz
