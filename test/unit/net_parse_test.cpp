// Header parsing: every well-formed kind, and every malformed case counted
// under its own drop reason.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include "dpgate/net/builder.hpp"
#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"

using namespace dpgate::net;

namespace {

DropReason parse(const std::vector<uint8_t>& f, PacketMeta& meta) {
  return parse_frame(f.data(), static_cast<uint32_t>(f.size()), meta);
}

DropReason parse(const std::vector<uint8_t>& f) {
  PacketMeta meta;
  return parse(f, meta);
}

}  // namespace

TEST_CASE("a TCP segment yields addresses, ports, flags and lengths") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").ttl(17).tcp(40000, 80, 0x12).payload("hello").build();
  PacketMeta m;
  REQUIRE(parse(f, m) == DropReason::kNone);
  CHECK(m.l3 == L3Kind::kIpv4);
  CHECK(m.l2_len == 14);
  CHECK(m.l3_len == 20);
  CHECK(m.ip_total_len == 20 + 20 + 5);
  CHECK(to_host(m.tuple.src.v4()) == *parse_ipv4("198.18.0.5"));
  CHECK(to_host(m.tuple.dst.v4()) == *parse_ipv4("198.19.0.10"));
  CHECK(to_host(m.tuple.src_port) == 40000);
  CHECK(to_host(m.tuple.dst_port) == 80);
  CHECK(m.tuple.proto == kProtoTcp);
  CHECK(m.tuple.family == Family::kIpv4);
  CHECK(m.tcp_flags == 0x12);
  CHECK(m.ttl == 17);
  CHECK(m.fragment == Fragment::kNone);
}

TEST_CASE("a UDP datagram behind an 802.1Q tag is parsed past the tag") {
  auto f = PacketBuilder().vlan(0x2064).ipv4("198.18.0.5", "198.19.0.10").udp(5353, 53).build();
  PacketMeta m;
  REQUIRE(parse(f, m) == DropReason::kNone);
  CHECK(m.has_vlan);
  CHECK(m.vlan_tci == 0x2064);
  CHECK(m.l2_len == 18);
  CHECK(to_host(m.tuple.dst_port) == 53);
  CHECK(m.tuple.proto == kProtoUdp);
}

TEST_CASE("an ICMP echo is identified by type, code and identifier") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").icmp(8, 0, 0x1234, 7).build();
  PacketMeta m;
  REQUIRE(parse(f, m) == DropReason::kNone);
  CHECK(m.icmp_type == 8);
  CHECK(m.icmp_code == 0);
  CHECK(to_host(m.tuple.src_port) == 0x1234);
}

TEST_CASE("IP options are skipped using the header length") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").ip_options({1, 1, 1, 0}).udp(1, 2).build();
  PacketMeta m;
  REQUIRE(parse(f, m) == DropReason::kNone);
  CHECK(m.l3_len == 24);
  CHECK(to_host(m.tuple.dst_port) == 2);
}

TEST_CASE("Ethernet padding after the datagram is accepted") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(1, 2).build();
  f.resize(60, 0);
  PacketMeta m;
  REQUIRE(parse(f, m) == DropReason::kNone);
  CHECK(m.ip_total_len == 28);
}

TEST_CASE("fragments: the first carries ports, later ones none") {
  PacketMeta m;
  REQUIRE(parse(PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").fragment(0, true).udp(1, 2).build(), m) ==
          DropReason::kNone);
  CHECK(m.fragment == Fragment::kFirst);
  CHECK(to_host(m.tuple.dst_port) == 2);
  REQUIRE(parse(PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").fragment(185, false).proto(kProtoUdp)
                    .payload(std::vector<uint8_t>(3, 0)).build(), m) == DropReason::kNone);
  CHECK(m.fragment == Fragment::kLater);
  CHECK(m.tuple.dst_port == be16{});
}

TEST_CASE("ARP frames are recognised and length-checked") {
  const MacAddr a{{2, 0, 0, 0, 0, 1}};
  PacketMeta m;
  auto arp = PacketBuilder().arp(1, a, "198.18.0.5", MacAddr{}, "198.18.0.1").build();
  REQUIRE(parse(arp, m) == DropReason::kNone);
  CHECK(m.l3 == L3Kind::kArp);
  arp.resize(14 + 20);
  CHECK(parse(arp) == DropReason::kMalformedArp);
}

TEST_CASE("malformed frames are rejected with a named reason") {
  auto good = [] { return PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").tcp(1000, 80); };
  struct Case {
    const char* what;
    std::vector<uint8_t> frame;
    DropReason expected;
  };
  const std::vector<Case> cases = {
      {"shorter than an Ethernet header", good().truncate(13).build(), DropReason::kTruncatedEthernet},
      {"a VLAN tag cut short", PacketBuilder().vlan(5).ipv4("198.18.0.5", "198.19.0.10").truncate(16).build(),
       DropReason::kTruncatedEthernet},
      {"an unknown EtherType", good().ether_type(0x88cc).build(), DropReason::kUnsupportedEtherType},
      {"an IP header cut short", good().truncate(14 + 19).build(), DropReason::kTruncatedIpHeader},
      {"IP version 6 in an IPv4 EtherType", good().version(6).build(), DropReason::kBadIpVersion},
      {"IHL below 5", good().ihl(4).build(), DropReason::kBadIpHeaderLength},
      {"IHL beyond the frame", good().ihl(15).truncate(14 + 40).build(), DropReason::kBadIpHeaderLength},
      {"total length beyond the frame", good().total_length(200).build(), DropReason::kBadIpTotalLength},
      {"total length below the header", good().total_length(19).build(), DropReason::kBadIpTotalLength},
      {"a wrong header checksum", good().ip_checksum(0x1234).build(), DropReason::kBadIpChecksum},
      {"a TCP header cut short", good().total_length(20 + 12).truncate(14 + 32).build(), DropReason::kTruncatedL4Header},
      {"a UDP header cut short",
       PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(1, 2).total_length(20 + 4).truncate(14 + 24).build(),
       DropReason::kTruncatedL4Header},
      {"an ICMP header cut short",
       PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").icmp(8, 0).total_length(20 + 4).truncate(14 + 24).build(),
       DropReason::kTruncatedL4Header},
      {"a loopback source", PacketBuilder().ipv4("127.0.0.1", "198.19.0.10").udp(1, 2).build(), DropReason::kMartianSource},
      {"a multicast source", PacketBuilder().ipv4("224.0.0.5", "198.19.0.10").udp(1, 2).build(), DropReason::kMartianSource},
      {"the broadcast source", PacketBuilder().ipv4("255.255.255.255", "198.19.0.10").udp(1, 2).build(),
       DropReason::kMartianSource},
      {"a zero source", PacketBuilder().ipv4("0.0.0.0", "198.19.0.10").udp(1, 2).build(), DropReason::kMartianSource},
      {"a loopback destination", PacketBuilder().ipv4("198.18.0.5", "127.0.0.1").udp(1, 2).build(),
       DropReason::kMartianDestination},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    CHECK(parse(c.frame) == c.expected);
  }
}

TEST_CASE("the header checksum test agrees with a recomputed RFC 1071 checksum") {
  // ipv4_header_checksum_ok() tests the plain sum for a nonzero multiple of
  // 0xffff; checksum() folds. Random headers of every length, a third with
  // the right checksum, the rest off by a little or at random, and the
  // edges: all zeros, all ones, and sums whose right field is 0 or 0xffff.
  std::mt19937 rng(5222);
  int valid = 0;
  for (int i = 0; i < 300000; ++i) {
    const uint32_t ihl = 20 + 4 * (i % 11);
    uint8_t hdr[60];
    for (auto& byte : hdr) byte = static_cast<uint8_t>(rng());
    if (i % 97 == 0) std::memset(hdr, 0, sizeof(hdr));
    if (i % 89 == 0) std::memset(hdr, 0xff, sizeof(hdr));
    if (i % 3 == 0) {
      hdr[10] = hdr[11] = 0;
      uint16_t sum = checksum(hdr, ihl);
      if (i % 6 == 0 && sum == 0) sum = 0xffff;  // the other zero
      std::memcpy(hdr + 10, &sum, 2);
      if (i % 9 == 0) hdr[rng() % ihl] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    INFO("iteration " << i << ", ihl " << ihl);
    const bool ok = checksum(hdr, ihl) == 0;
    REQUIRE(ipv4_header_checksum_ok(hdr, ihl) == ok);
    valid += ok;
  }
  CHECK(valid > 50000);
  const uint8_t zeros[20] = {};
  CHECK_FALSE(ipv4_header_checksum_ok(zeros, 20));
}

TEST_CASE("martian sources and destinations, by first octet, match RFC 1812's lists") {
  // The lists spelt out as compares, against the octet sets the parser tests.
  auto source = [](uint32_t a) { return (a >> 24) == 0 || (a >> 24) == 127 || (a >> 24) >= 224; };
  auto destination = [](uint32_t a) {
    return (a >> 24) == 0 || (a >> 24) == 127 || ((a >> 24) >= 224 && (a >> 24) <= 239) || a == 0xffffffffu;
  };
  for (uint32_t octet = 0; octet < 256; ++octet) {
    for (const uint32_t low : {0u, 1u, 0x7fffffu, 0xfffffeu, 0xffffffu}) {
      const uint32_t a = octet << 24 | low;
      INFO(octet << "." << (low >> 16) << "." << ((low >> 8) & 255) << "." << (low & 255));
      CHECK(is_martian_source(a) == source(a));
      CHECK(is_martian_destination(a) == destination(a));
    }
  }
  static_assert(is_martian_source(0x7f000001) && !is_martian_source(0xc6120001));
  static_assert(is_martian_destination(0xffffffffu) && !is_martian_destination(0xf0000001));
  // Class E is martian as a source only: a destination there is routed (or not) like any other.
  PacketMeta meta;
  CHECK(parse(PacketBuilder().ipv4("198.18.0.5", "240.0.0.1").udp(1, 2).build(), meta) == DropReason::kNone);
  CHECK(parse(PacketBuilder().ipv4("198.18.0.5", "239.255.255.255").udp(1, 2).build()) ==
        DropReason::kMartianDestination);
  CHECK(parse(PacketBuilder().ipv4("198.18.0.5", "255.255.255.255").udp(1, 2).build()) ==
        DropReason::kMartianDestination);
  CHECK(parse(PacketBuilder().ipv4("240.0.0.1", "198.18.0.5").tcp(1, 2).build()) == DropReason::kMartianSource);
  CHECK(parse(PacketBuilder().ipv4("126.255.255.255", "128.0.0.0").tcp(1, 2).build()) == DropReason::kNone);
}

TEST_CASE("the inline path's martian table sends every martian pair, and only those and octet 255, to the general parser") {
  unsigned checked = 0;
  for (uint32_t so = 0; so < 256; ++so) {
    for (uint32_t d = 0; d < 256; ++d) {
      for (const uint32_t low : {0x010203u, 0xffffffu}) {
        const std::string src = std::to_string(so) + ".1.2.3";
        const std::string dst = format_ipv4(d << 24 | low);
        const auto f = PacketBuilder().ipv4(src.c_str(), dst.c_str()).udp(1, 2).build();
        PacketMeta fast, general, probe;
        const DropReason a = parse_frame(f.data(), static_cast<uint32_t>(f.size()), fast);
        const DropReason b = parse_any_frame(f.data(), static_cast<uint32_t>(f.size()), general, {});
        const bool plain = parse_plain_frame(f.data(), static_cast<uint32_t>(f.size()), probe, {});
        INFO(src << " -> " << dst);
        REQUIRE(a == b);
        REQUIRE(plain == (!is_martian_source(so << 24) && !is_martian_destination(d << 24 | low) && d != 255));
        ++checked;
      }
    }
  }
  CHECK(checked == 2 * 256 * 256);
}

TEST_CASE("a TCP data offset below 5 words or past the datagram is rejected") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").tcp(1000, 80).build();
  f[14 + 20 + 12] = 0x40;  // 4 words
  CHECK(parse(f) == DropReason::kBadTcpHeaderLength);
  f[14 + 20 + 12] = 0xf0;  // 60 bytes, only 20 present
  CHECK(parse(f) == DropReason::kBadTcpHeaderLength);
}

TEST_CASE("a NIC-verified checksum is not checked again") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(1, 2).ip_checksum(0xbeef).build();
  PacketMeta m;
  CHECK(parse_frame(f.data(), static_cast<uint32_t>(f.size()), m, ParseOptions{true}) == DropReason::kNone);
}

TEST_CASE("IPv6 frames are recognised, not parsed as IPv4") {
  auto f = PacketBuilder().ether_type(kEtherTypeIpv6).payload(std::vector<uint8_t>(40, 0)).build();
  PacketMeta m;
  REQUIRE(parse(f, m) == DropReason::kNone);
  CHECK(m.l3 == L3Kind::kIpv6);
}

TEST_CASE("address text forms parse strictly") {
  CHECK(parse_ipv4("198.18.0.1") == 0xc6120001u);
  CHECK_FALSE(parse_ipv4("198.18.0"));
  CHECK_FALSE(parse_ipv4("198.18.0.256"));
  CHECK_FALSE(parse_ipv4("198.18.0.1 "));
  CHECK_FALSE(parse_ipv4("1..2.3"));
  auto p = parse_ipv4_prefix("198.18.0.1/15");
  REQUIRE(p);
  CHECK(p->len == 15);
  CHECK(p->contains(*parse_ipv4("198.19.255.255")));
  CHECK_FALSE(p->contains(*parse_ipv4("198.20.0.0")));
  CHECK_FALSE(parse_ipv4_prefix("198.18.0.1/33"));
  CHECK(format_ipv4(0xc6120001u) == "198.18.0.1");
  CHECK(parse_mac("02:00:0a:0B:0c:ff").has_value());
  CHECK(format_mac(*parse_mac("02:00:0a:0B:0c:ff")) == "02:00:0a:0b:0c:ff");
  CHECK_FALSE(parse_mac("02:00:0a:0B:0c"));
  CHECK_FALSE(parse_mac("02-00-0a-0B-0c-ff"));
}

// parse_frame() takes an inline path for untagged, option-less, unfragmented
// TCP/UDP that passes every check, and parse_any_frame() for the rest: the two
// must agree on every frame, reason and metadata alike. Frames of each kind
// are corrupted at random in their headers and lengths.
TEST_CASE("the inline common-frame path agrees with the general parser") {
  std::mt19937 rng(20261205);
  const std::vector<std::vector<uint8_t>> seeds = {
      PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").tcp(40000, 80, 0x10).payload("hello").build(),
      PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(5353, 53).payload("q").build(),
      PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(1, 2).build(),
      PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").icmp(8, 0, 7, 1).build(),
      PacketBuilder().vlan(7).ipv4("198.18.0.5", "198.19.0.10").tcp(1, 2, 0x02).build(),
  };
  unsigned plain = 0, differ = 0;
  for (int round = 0; round < 200000; ++round) {
    std::vector<uint8_t> f = seeds[rng() % seeds.size()];
    const unsigned edits = rng() % 4;
    for (unsigned k = 0; k < edits; ++k) {
      const unsigned at = rng() % std::min<size_t>(f.size(), 60);
      // Mostly single bits, so some frames stay close to valid.
      f[at] ^= (rng() % 2) ? uint8_t(1u << (rng() % 8)) : uint8_t(rng());
    }
    if (rng() % 4 == 0) f.resize(rng() % (f.size() + 8));
    // Half the time the header checksum is made right again, so the other
    // checks are reached.
    const size_t l2 = f.size() >= 14 && f[12] == 0x81 && f[13] == 0 ? 18 : 14;
    const size_t ihl = f.size() > l2 ? (f[l2] & 0x0f) * 4u : 0;
    if (rng() % 2 == 0 && ihl >= 20 && f.size() >= l2 + ihl) {
      f[l2 + 10] = f[l2 + 11] = 0;
      const uint16_t sum = checksum(f.data() + l2, ihl);
      std::memcpy(f.data() + l2 + 10, &sum, 2);
    }
    PacketMeta fast, general;
    std::memset(static_cast<void*>(&fast), 0xa5, sizeof fast);  // every byte must be written
    std::memset(static_cast<void*>(&general), 0x5a, sizeof general);
    const DropReason a = parse_frame(f.data(), static_cast<uint32_t>(f.size()), fast);
    const DropReason b = parse_any_frame(f.data(), static_cast<uint32_t>(f.size()), general, {});
    PacketMeta probe;
    plain += parse_plain_frame(f.data(), static_cast<uint32_t>(f.size()), probe, {});
    if (a != b || (a == DropReason::kNone && std::memcmp(&fast, &general, sizeof fast) != 0)) ++differ;
    // The routing-only fill: the same verdict and the same routing fields.
    PacketMeta routing;
    std::memset(static_cast<void*>(&routing), 0xa5, sizeof routing);
    const DropReason c = parse_frame<MetaFill::kRouting>(f.data(), static_cast<uint32_t>(f.size()), routing);
    if (c != b || (c == DropReason::kNone &&
                   (routing.l2_len != general.l2_len || routing.l3_len != general.l3_len ||
                    routing.ip_total_len != general.ip_total_len || routing.l3 != general.l3 ||
                    routing.fragment != general.fragment || routing.ttl != general.ttl ||
                    routing.has_vlan != general.has_vlan))) {
      ++differ;
    }
  }
  CHECK(differ == 0);
  CHECK(plain > 10000);  // the inline path was taken often enough to be compared
}
