// Addresses, byte-order types and the 5-tuple shared by every module.
// Plain value types; any thread may use them.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dpgate::net {

// Values as they lie on the wire. Converting is explicit: to_host()/to_be*().
enum class be16 : uint16_t {};
enum class be32 : uint32_t {};

constexpr uint16_t bswap16(uint16_t v) { return static_cast<uint16_t>((v << 8) | (v >> 8)); }
constexpr uint32_t bswap32(uint32_t v) {
  return (v << 24) | ((v & 0xff00u) << 8) | ((v >> 8) & 0xff00u) | (v >> 24);
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "dpgate assumes a little-endian host");

constexpr uint16_t to_host(be16 v) { return bswap16(static_cast<uint16_t>(v)); }
constexpr uint32_t to_host(be32 v) { return bswap32(static_cast<uint32_t>(v)); }
constexpr be16 to_be16(uint16_t v) { return static_cast<be16>(bswap16(v)); }
constexpr be32 to_be32(uint32_t v) { return static_cast<be32>(bswap32(v)); }

enum class Family : uint8_t { kNone = 0, kIpv4 = 4, kIpv6 = 6 };

// An IPv4 or IPv6 address. IPv4 sits in the first four bytes (network order),
// the rest zero, so tuples of both families share one layout.
struct IpAddr {
  alignas(4) std::array<uint8_t, 16> bytes{};

  static IpAddr from_v4(be32 v4) {
    IpAddr a;
    __builtin_memcpy(a.bytes.data(), &v4, 4);
    return a;
  }
  be32 v4() const {
    be32 v;
    __builtin_memcpy(&v, bytes.data(), 4);
    return v;
  }
  // Two 8-byte words: the defaulted comparison of the byte array calls
  // memcmp, which shows in the per-packet profile (NAT and conntrack compare
  // addresses several times per packet).
  friend constexpr bool operator==(const IpAddr& a, const IpAddr& b) {
    const auto x = std::bit_cast<std::array<uint64_t, 2>>(a.bytes);
    const auto y = std::bit_cast<std::array<uint64_t, 2>>(b.bytes);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
  }
};

// A connection's identity in one direction. 40 bytes, no padding holes, so it
// can be hashed and compared as raw memory.
struct FiveTuple {
  IpAddr src;
  IpAddr dst;
  be16 src_port{};  // ICMP: the echo identifier; 0 for other protocols
  be16 dst_port{};
  uint8_t proto = 0;
  Family family = Family::kNone;
  uint16_t pad = 0;
  friend bool operator==(const FiveTuple&, const FiveTuple&) = default;
};
static_assert(sizeof(FiveTuple) == 40);

struct MacAddr {
  std::array<uint8_t, 6> bytes{};
  friend bool operator==(const MacAddr&, const MacAddr&) = default;
  bool is_broadcast() const { return bytes == std::array<uint8_t, 6>{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; }
  bool is_multicast() const { return (bytes[0] & 1) != 0; }
};

// An IPv4 prefix in host byte order, e.g. 198.18.0.0/15.
struct Ipv4Prefix {
  uint32_t addr = 0;
  uint8_t len = 0;
  uint32_t mask() const { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
  bool contains(uint32_t host_addr) const { return (host_addr & mask()) == (addr & mask()); }
  friend bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};

// Text forms. Parsers accept exactly dotted-quad / CIDR / colon MAC and return
// nullopt for anything else. Any thread.
std::optional<uint32_t> parse_ipv4(std::string_view text);
std::optional<Ipv4Prefix> parse_ipv4_prefix(std::string_view text);
std::optional<MacAddr> parse_mac(std::string_view text);
std::string format_ipv4(uint32_t host_addr);
std::string format_mac(const MacAddr& mac);

}  // namespace dpgate::net
