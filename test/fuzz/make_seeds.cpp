// Writes the packet and pipeline fuzzers' seed corpora (test/fuzz/corpus/)
// from PacketBuilder frames. Run by scripts/fuzz.sh --seeds; the output is
// committed so a fuzz run starts from it.
// Usage: make_seeds CORPUS_DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "dpgate/net/builder.hpp"
#include "dpgate/net/packet.hpp"
#include "ring_router.hpp"

using namespace dpgate;
using net::PacketBuilder;
using Frame = std::vector<uint8_t>;
namespace fs = std::filesystem;

namespace {

const net::MacAddr kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

PacketBuilder from_lan() { return PacketBuilder().eth(fuzz::kClientMac, fuzz::kLanMac); }
PacketBuilder from_wan() { return PacketBuilder().eth(fuzz::kServerMac, fuzz::kWanMac); }

// PacketBuilder writes a 20-byte TCP header; this claims `words` 32-bit words.
Frame tcp_data_offset(Frame f, uint8_t words) {
  f[net::kEthHeaderLen + 20 + 12] = static_cast<uint8_t>(words << 4);
  return f;
}

// Single frames: good ones of every kind the parser knows, and one of each malformation.
std::vector<std::pair<std::string, Frame>> frames() {
  auto lan = [] { return from_lan().ipv4("198.18.1.2", "198.19.0.10"); };
  return {
      {"tcp", lan().tcp(40000, 80, 0x02).payload("GET / HTTP/1.1\r\n\r\n").build()},
      {"udp", lan().udp(5353, 53).payload("query").build()},
      {"icmp-echo", from_lan().ipv4("198.18.1.2", "198.18.1.1").icmp(8, 0, 7, 1).payload("ping").build()},
      {"icmp-error", lan().icmp(3, 1).payload(std::vector<uint8_t>(28, 0x45)).build()},
      {"vlan-udp", from_lan().vlan(100).ipv4("198.18.1.2", "198.19.0.10").udp(7, 7).build()},
      {"ip-options", lan().ip_options({0x94, 0x04, 0, 0}).udp(1, 2).build()},
      {"first-fragment", lan().fragment(0, true).udp(1, 2).payload(std::vector<uint8_t>(32, 1)).build()},
      {"later-fragment", lan().fragment(4, false).proto(17).payload(std::vector<uint8_t>(16, 2)).build()},
      {"ttl-1", lan().ttl(1).udp(33434, 33435).build()},
      {"ttl-0", lan().ttl(0).udp(33434, 33435).build()},
      {"no-route", from_lan().ipv4("198.18.1.2", "198.21.0.1").tcp(1, 443).build()},
      {"too-big", lan().dont_fragment().udp(1, 2).payload(std::vector<uint8_t>(1450, 7)).build()},
      {"arp-request", PacketBuilder().eth(fuzz::kClientMac, kBroadcast)
                          .arp(1, fuzz::kClientMac, "198.18.1.2", net::MacAddr{}, "198.18.1.1").build()},
      {"ipv6", from_lan().ether_type(0x86dd).payload(std::vector<uint8_t>(40, 0)).build()},
      {"bad-checksum", lan().udp(1, 2).ip_checksum(0xdead).build()},
      {"ihl-3", lan().udp(1, 2).ihl(3).build()},
      {"ihl-15", lan().udp(1, 2).ihl(15).build()},
      {"total-length-long", lan().udp(1, 2).total_length(999).build()},
      {"total-length-short", lan().udp(1, 2).total_length(10).build()},
      {"version-6", lan().udp(1, 2).version(6).build()},
      {"truncated-tcp", lan().tcp(1, 2).truncate(14 + 20 + 10).build()},
      {"truncated-ip", lan().udp(1, 2).truncate(14 + 12).build()},
      {"martian-source", from_lan().ipv4("127.0.0.1", "198.19.0.10").udp(1, 2).build()},
      {"multicast-source", from_lan().ipv4("224.0.0.1", "198.19.0.10").udp(1, 2).build()},
      {"martian-destination", from_lan().ipv4("198.18.1.2", "0.1.2.3").udp(1, 2).build()},
      {"tcp-data-offset-15", tcp_data_offset(lan().tcp(1, 2).build(), 15)},
  };
}

// Several frames per input: exchanges where one frame changes how the next is handled.
std::vector<std::pair<std::string, Frame>> exchanges() {
  using Recs = std::vector<std::pair<uint16_t, Frame>>;
  const Frame to_unresolved = from_lan().ipv4("198.18.1.2", "198.20.0.5").tcp(1000, 80).build();
  const Frame reply_from_unresolved = from_wan().arp(2, net::MacAddr{{0x02, 0x55, 0, 0, 0, 5}}, "198.20.0.5",
                                                     fuzz::kWanMac, "198.18.2.1").build();
  const std::vector<std::pair<std::string, Recs>> list = {
      {"arp-then-resolved", {{fuzz::kLan, to_unresolved}, {fuzz::kWan, reply_from_unresolved}}},
      {"unresolved-queue", Recs(10, {fuzz::kLan, to_unresolved})},
      {"both-directions",
       {{fuzz::kLan, from_lan().ipv4("198.18.1.2", "198.19.0.10").tcp(40000, 80, 0x02).build()},
        {fuzz::kWan, from_wan().ipv4("198.19.0.10", "198.18.1.2").tcp(80, 40000, 0x12).build()}}},
      {"echo-both-subnets",
       {{fuzz::kLan, from_lan().ipv4("198.18.3.9", "198.18.3.1").icmp(8, 0, 1, 1).build()},
        {fuzz::kWan, from_wan().ipv4("198.18.2.2", "198.18.1.1").icmp(8, 0, 2, 2).payload("x").build()}}},
      {"errors-and-good",
       {{fuzz::kLan, from_lan().ipv4("198.18.1.2", "198.19.0.10").ttl(1).udp(1, 2).build()},
        {fuzz::kLan, from_lan().ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).ip_checksum(1).build()},
        {fuzz::kLan, from_lan().ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).build()}}},
  };
  std::vector<std::pair<std::string, Frame>> out;
  for (const auto& [name, recs] : list) {
    Frame bytes;
    for (const auto& [port, f] : recs) fuzz::encode_record(bytes, port, f);
    out.emplace_back(name, std::move(bytes));
  }
  return out;
}

void write(const fs::path& dir, const std::string& name, const Frame& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                    static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
    return 2;
  }
  const fs::path root = argv[1];
  int n = 0;
  for (const auto& [name, f] : frames()) {
    write(root / "packet", name, f);
    Frame rec;
    fuzz::encode_record(rec, fuzz::kLan, f);
    write(root / "pipeline", name, rec);
    ++n;
  }
  for (const auto& [name, bytes] : exchanges()) {
    write(root / "pipeline", name, bytes);
    ++n;
  }
  std::printf("make_seeds: %d seeds under %s\n", n, root.c_str());
  return 0;
}
