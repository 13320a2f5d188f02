// Packet translation: every rewrite leaves checksums exactly as a full
// recomputation would, for TCP, UDP (with and without checksum), ICMP echo,
// later fragments, and the quote inside ICMP errors.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include "dpgate/dataplane/nat.hpp"
#include "dpgate/net/builder.hpp"
#include "dpgate/net/checksum.hpp"

using namespace dpgate;
using dataplane::NatSide;
using net::PacketBuilder;

namespace {

uint32_t addr(const char* s) { return *net::parse_ipv4(s); }

net::PacketMeta meta_of(const std::vector<uint8_t>& f) {
  net::PacketMeta m;
  REQUIRE(net::parse_frame(f.data(), static_cast<uint32_t>(f.size()), m) == net::DropReason::kNone);
  return m;
}

// The same packet built directly with the translated values.
void require_same(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("byte " << i);
    REQUIRE(static_cast<int>(got[i]) == static_cast<int>(want[i]));
  }
}

}  // namespace

TEST_CASE("DNAT of a TCP segment equals the segment built for the backend") {
  auto f = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").tcp(40000, 80, 0x02, 77).payload("GET /").build();
  dataplane::nat_rewrite(f.data() + 14, meta_of(f), NatSide::kDestination, addr("198.18.2.7"), 8080);
  require_same(f, PacketBuilder().ipv4("198.18.1.2", "198.18.2.7").tcp(40000, 8080, 0x02, 77).payload("GET /").build());
}

TEST_CASE("SNAT of a UDP datagram equals the datagram built from the new source") {
  auto f = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").udp(5353, 53).payload("query").build();
  dataplane::nat_rewrite(f.data() + 14, meta_of(f), NatSide::kSource, addr("198.18.2.1"), 61000);
  require_same(f, PacketBuilder().ipv4("198.18.2.1", "198.19.0.10").udp(61000, 53).payload("query").build());
}

TEST_CASE("a UDP datagram without checksum keeps none") {
  auto f = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").udp(1, 2).payload("x").build();
  f[14 + 20 + 6] = f[14 + 20 + 7] = 0;
  dataplane::nat_rewrite(f.data() + 14, meta_of(f), NatSide::kDestination, addr("198.18.2.7"), 9);
  CHECK(f[14 + 20 + 6] == 0);
  CHECK(f[14 + 20 + 7] == 0);
  CHECK(net::checksum(f.data() + 14, 20) == 0);
}

TEST_CASE("the inline TCP/UDP rewrite writes the bytes the general one writes") {
  // nat_rewrite() handles TCP and UDP itself and hands the rest to
  // nat_rewrite_any(): for random segments, datagrams, sides, addresses and
  // ports both leave the same frame, with valid checksums.
  std::mt19937 rng(11);
  auto dotted = [&rng] {
    return "198." + std::to_string(18 + rng() % 2) + "." + std::to_string(rng() % 256) + "." +
           std::to_string(rng() % 256);
  };
  for (unsigned n = 0; n < 20000; ++n) {
    PacketBuilder builder;
    builder.ipv4(dotted().c_str(), dotted().c_str());
    const bool tcp = rng() % 2 == 0;
    if (tcp) {
      builder.tcp(static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()), 0x10, rng());
    } else {
      builder.udp(static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()));
    }
    const auto frame = builder.payload(std::string(rng() % 40, 'x')).build();
    const NatSide side = rng() % 2 ? NatSide::kSource : NatSide::kDestination;
    const uint32_t to = rng();
    const auto port = static_cast<uint16_t>(rng());
    auto inline_path = frame, general = frame;
    dataplane::nat_rewrite(inline_path.data() + 14, meta_of(frame), side, to, port);
    dataplane::nat_rewrite_any(general.data() + 14, meta_of(frame), side, to, port);
    INFO("frame " << n << (tcp ? " tcp" : " udp"));
    require_same(inline_path, general);
    CHECK(net::checksum(inline_path.data() + 14, 20) == 0);
  }
}

TEST_CASE("a UDP rewrite whose checksum comes out zero sends it as 0xffff") {
  // As the new port runs through all values, the transport checksum takes
  // every value once: one port makes it 0, which UDP must send as 0xffff.
  const auto frame = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").udp(5353, 53).payload("q").build();
  unsigned zero_sums = 0;
  for (uint32_t port = 0; port <= 0xffff; ++port) {
    auto f = frame;
    dataplane::nat_rewrite(f.data() + 14, meta_of(frame), NatSide::kSource, addr("198.18.2.1"),
                           static_cast<uint16_t>(port));
    const uint16_t sum = static_cast<uint16_t>(f[14 + 20 + 6] << 8 | f[14 + 20 + 7]);
    REQUIRE(sum != 0);
    if (sum == 0xffff) {
      ++zero_sums;
      auto general = frame;
      dataplane::nat_rewrite_any(general.data() + 14, meta_of(frame), NatSide::kSource, addr("198.18.2.1"),
                                 static_cast<uint16_t>(port));
      require_same(f, general);
    }
  }
  CHECK(zero_sums >= 1);
}

TEST_CASE("SNAT of an ICMP echo rewrites the identifier") {
  auto f = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").icmp(8, 0, 0x1111, 5).payload("ping").build();
  dataplane::nat_rewrite(f.data() + 14, meta_of(f), NatSide::kSource, addr("198.18.2.1"), 0x2222);
  require_same(f, PacketBuilder().ipv4("198.18.2.1", "198.19.0.10").icmp(8, 0, 0x2222, 5).payload("ping").build());
}

TEST_CASE("a later fragment gets only its address rewritten") {
  auto f = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").fragment(100, false).proto(net::kProtoUdp)
               .payload(std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}).build();
  dataplane::nat_rewrite(f.data() + 14, meta_of(f), NatSide::kDestination, addr("198.18.2.7"), 9999);
  require_same(f, PacketBuilder().ipv4("198.18.1.2", "198.18.2.7").fragment(100, false).proto(net::kProtoUdp)
                      .payload(std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}).build());
}

TEST_CASE("the quote of an ICMP error is translated back, with all checksums valid") {
  // The backend 198.18.2.7:8080 answers a DNATed segment with port unreachable;
  // the client must see its original destination 198.19.0.10:80 quoted.
  const auto original = PacketBuilder().ipv4("198.18.1.2", "198.18.2.7").tcp(40000, 8080).build();
  std::vector<uint8_t> quote(original.begin() + 14, original.end());
  auto f = PacketBuilder().ipv4("198.18.2.7", "198.18.1.2").icmp(3, 3).payload(quote).build();
  // icmp() put id/seq into the 4 "unused" bytes; they are zero for this type.
  const auto m = meta_of(f);
  net::FiveTuple quoted;
  REQUIRE(dataplane::icmp_quoted_tuple(f.data() + 14, m, quoted));
  CHECK(net::to_host(quoted.dst_port) == 8080);
  REQUIRE(dataplane::nat_rewrite_icmp_quote(f.data() + 14, m, NatSide::kDestination, addr("198.19.0.10"), 80));
  dataplane::nat_rewrite(f.data() + 14, m, NatSide::kSource, addr("198.19.0.10"), 0);

  const auto expect_quote = PacketBuilder().ipv4("198.18.1.2", "198.19.0.10").tcp(40000, 80).build();
  require_same(f, PacketBuilder().ipv4("198.19.0.10", "198.18.1.2").icmp(3, 3)
                      .payload(std::vector<uint8_t>(expect_quote.begin() + 14, expect_quote.end())).build());
}

TEST_CASE("a quote too short for a header is refused") {
  auto f = PacketBuilder().ipv4("198.18.2.7", "198.18.1.2").icmp(3, 3).payload(std::vector<uint8_t>(10, 0x45)).build();
  const auto m = meta_of(f);
  net::FiveTuple quoted;
  CHECK_FALSE(dataplane::icmp_quoted_tuple(f.data() + 14, m, quoted));
  CHECK_FALSE(dataplane::nat_rewrite_icmp_quote(f.data() + 14, m, NatSide::kDestination, 1, 1));
}
