// Checksums: RFC 1071 full sums and RFC 1624 incremental updates agree.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include "dpgate/net/builder.hpp"
#include "dpgate/net/checksum.hpp"

using namespace dpgate::net;

TEST_CASE("the RFC 1071 example sums as the RFC says") {
  // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (before complement).
  const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  const uint32_t sum = checksum_partial(data, sizeof data);
  CHECK(bswap16(static_cast<uint16_t>(sum)) == 0xddf2);
}

TEST_CASE("a built header checksums to zero, and an odd length pads with zero") {
  auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(1, 2).payload("abc").build();
  CHECK(checksum(f.data() + 14, 20) == 0);
  const uint8_t odd[] = {0x12, 0x34, 0x56};
  const uint8_t even[] = {0x12, 0x34, 0x56, 0x00};
  CHECK(checksum(odd, 3) == checksum(even, 4));
}

TEST_CASE("TTL decrement keeps the header checksum valid for every TTL") {
  for (int ttl = 2; ttl <= 255; ++ttl) {
    auto f = PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").ttl(static_cast<uint8_t>(ttl)).tcp(1, 2).build();
    ipv4_decrement_ttl(f.data() + 14);
    INFO("ttl " << ttl);
    CHECK(f[14 + 8] == ttl - 1);
    CHECK(checksum(f.data() + 14, 20) == 0);
  }
}

TEST_CASE("TTL decrement equals recomputation for random headers, the checksum's edge values included") {
  std::mt19937 rng(1141);
  int edges = 0;
  for (int i = 0; i < 200000; ++i) {
    uint8_t hdr[20];
    for (auto& b : hdr) b = static_cast<uint8_t>(rng());
    hdr[8] = static_cast<uint8_t>(2 + rng() % 254);
    hdr[10] = hdr[11] = 0;
    uint16_t sum = checksum(hdr, 20);
    std::memcpy(hdr + 10, &sum, 2);
    edges += sum == 0 || sum == 0xffff || sum == 0xfeff || sum == 0x0100;
    ipv4_decrement_ttl(hdr);
    uint16_t got;
    std::memcpy(&got, hdr + 10, 2);
    hdr[10] = hdr[11] = 0;
    INFO("header " << i << " checksum before " << sum);
    REQUIRE(got == checksum(hdr, 20));
  }
  CHECK(edges > 0);
}

TEST_CASE("address and port adjustments give the recomputed checksum exactly, over many random rewrites") {
  std::mt19937 rng(16241);
  for (int i = 0; i < 200000; ++i) {
    uint8_t hdr[20];
    for (auto& b : hdr) b = static_cast<uint8_t>(rng());
    if (i % 7 == 0) std::memset(hdr, 0xff, 12);  // sums near the fold boundaries
    hdr[10] = hdr[11] = 0;
    uint16_t sum = checksum(hdr, 20);
    const uint16_t before = sum;
    uint32_t old_addr, new_addr = i % 5 == 0 ? 0xffffffffu : static_cast<uint32_t>(rng());
    std::memcpy(&old_addr, hdr + 12, 4);
    std::memcpy(hdr + 12, &new_addr, 4);
    sum = checksum_adjust32(sum, old_addr, new_addr);
    uint16_t old_word, new_word = static_cast<uint16_t>(rng());
    std::memcpy(&old_word, hdr + 4, 2);
    std::memcpy(hdr + 4, &new_word, 2);
    sum = checksum_adjust16(sum, old_word, new_word);
    INFO("iteration " << i);
    REQUIRE(sum == checksum(hdr, 20));
    // Both rewrites as one sum of deltas (nat_rewrite's transport checksum).
    REQUIRE(checksum_apply(before, checksum_delta32(old_addr, new_addr) + checksum_delta16(old_word, new_word)) ==
            sum);
  }
}

TEST_CASE("incremental updates equal recomputation for random headers and rewrites") {
  std::mt19937 rng(1624);
  for (int i = 0; i < 2000; ++i) {
    uint8_t hdr[20];
    for (auto& b : hdr) b = static_cast<uint8_t>(rng());
    hdr[10] = hdr[11] = 0;
    uint16_t sum = checksum(hdr, 20);
    std::memcpy(hdr + 10, &sum, 2);

    uint32_t old_addr, new_addr = static_cast<uint32_t>(rng());
    std::memcpy(&old_addr, hdr + 12, 4);
    std::memcpy(hdr + 12, &new_addr, 4);
    sum = checksum_adjust32(sum, old_addr, new_addr);
    std::memcpy(hdr + 10, &sum, 2);
    INFO("iteration " << i);
    REQUIRE(checksum(hdr, 20) == 0);
  }
}

TEST_CASE("transport checksums of built TCP, UDP and ICMP packets verify") {
  for (auto f : {PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").tcp(1, 2).payload("hello").build(),
                 PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").udp(1, 2).payload("hello!").build(),
                 PacketBuilder().ipv4("198.18.0.5", "198.19.0.10").icmp(8, 0, 1, 1).payload("x").build()}) {
    uint8_t* ip = f.data() + 14;
    const uint8_t proto = ip[9];
    const size_t at = 14 + 20 + (proto == 6 ? 16 : proto == 17 ? 6 : 2);
    uint16_t stored;
    std::memcpy(&stored, &f[at], 2);
    f[at] = f[at + 1] = 0;
    CHECK(ipv4_l4_checksum(ip) == stored);
  }
}
