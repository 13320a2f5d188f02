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

TEST_CASE("32-bit one's-complement addition and folding agree with adding and folding 16-bit halves") {
  std::mt19937 rng(1071);
  const uint32_t edges[] = {0, 1, 0xffff, 0x10000, 0xfffe, 0xffff0000u, 0xfffffffeu, 0xffffffffu, 0x8000ffffu, 0x7fff8000u};
  auto check = [](uint32_t a, uint32_t b) {
    // the reference: the 64-bit sum folded to 32 bits with its carries
    uint64_t ref = uint64_t{a} + b;
    ref = (ref & 0xffffffffu) + (ref >> 32);
    INFO(a << " + " << b);
    REQUIRE(checksum_add32(a, b) == ref);
    REQUIRE(checksum_fold32(a) == checksum_finish(a));
    // folding the 32-bit sum equals folding the sum of the four halves
    REQUIRE(checksum_fold32(checksum_add32(a, b)) == checksum_finish((a & 0xffff) + (a >> 16) + (b & 0xffff) + (b >> 16)));
  };
  for (const uint32_t a : edges) {
    for (const uint32_t b : edges) check(a, b);
  }
  for (int i = 0; i < 1000000; ++i) check(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()));
  CHECK(checksum_add32(0, 0) == 0);
  CHECK(checksum_add32(1, 0xffffffffu) == 1);  // never 0 unless both are
  CHECK(checksum_fold32(0) == 0xffff);
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
    REQUIRE(checksum_apply(before, checksum_add32(checksum_delta32(old_addr, new_addr), checksum_delta16(old_word, new_word))) ==
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
