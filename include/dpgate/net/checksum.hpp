// Internet checksums (RFC 1071) and their incremental update (RFC 1624).
// Words are taken as they lie in memory; one's-complement sums are byte-order
// independent, so results can be stored back without swapping. Any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dpgate::net {

// Folded one's-complement sum of len bytes, added to `initial`.
uint32_t checksum_partial(const void* data, size_t len, uint32_t initial = 0);

// The checksum field value (complemented, folded) of a buffer whose own
// checksum field is zero.
inline uint16_t checksum_finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline uint16_t checksum(const void* data, size_t len) {
  return checksum_finish(checksum_partial(data, len));
}

// One's-complement sum of two 32-bit words (RFC 1071): the carry out of the
// top is added back in. A 32-bit one's-complement sum folds to the same
// 16-bit one as its two halves would (2^16 = 1 modulo 0xffff), and it is 0
// only when both words are.
inline uint32_t checksum_add32(uint32_t a, uint32_t b) {
  const uint32_t s = a + b;
  return s + (s < b);
}

// A 32-bit one's-complement sum folded to 16 bits and complemented: the top
// half of sum + rotl(sum, 16) is hi + lo with its end-around carry.
inline uint16_t checksum_fold32(uint32_t sum) {
  return static_cast<uint16_t>(~((sum + std::rotl(sum, 16)) >> 16));
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') when a word m becomes m'. The
// (~m + m') part, unfolded, for a 32-bit field (an address): a NAT rewrite
// adds the same one to the IP header's checksum and to the transport
// checksum whose pseudo-header holds the address.
inline uint32_t checksum_delta32(uint32_t old_value, uint32_t new_value) {
  return checksum_add32(~old_value, new_value);
}
// The same for a 16-bit field; at most 0x1fffe.
inline uint32_t checksum_delta16(uint16_t old_word, uint16_t new_word) {
  return uint32_t(static_cast<uint16_t>(~old_word)) + new_word;
}

// HC' from HC and a delta above (several are one delta combined with
// checksum_add32).
inline uint16_t checksum_apply(uint16_t hc, uint32_t delta) {
  return checksum_fold32(checksum_add32(delta, static_cast<uint16_t>(~hc)));
}

inline uint16_t checksum_adjust16(uint16_t hc, uint16_t old_word, uint16_t new_word) {
  return checksum_apply(hc, checksum_delta16(old_word, new_word));
}

// Same for a 32-bit field (an address), as two 16-bit words in one sum.
inline uint16_t checksum_adjust32(uint16_t hc, uint32_t old_value, uint32_t new_value) {
  return checksum_apply(hc, checksum_delta32(old_value, new_value));
}

// Decrements the TTL of the IPv4 header at `ip` and patches its checksum
// incrementally. The caller has checked TTL > 1. Inline: it runs for every
// forwarded packet. TTL and protocol share the 16-bit word at offset 8; read
// as it lies in memory on this little-endian host, TTL is its low byte, so
// the word drops by exactly 1 (TTL > 1: no borrow) and RFC 1624 eqn. 3 needs
// only the checksum: HC' = ~(~HC + ~m + m') = ~(~HC + 0xfffe). That sum is at
// most 0x1fffd, so one fold ends its carries. No word is read back after the
// TTL store (a store-forwarding stall).
inline void ipv4_decrement_ttl(uint8_t* ip) {
  static_assert(std::endian::native == std::endian::little, "the word at offset 8 read little-endian");
  --ip[8];
  uint16_t hc;
  std::memcpy(&hc, ip + 10, 2);
  uint32_t sum = uint32_t(static_cast<uint16_t>(~hc)) + 0xfffeu;
  sum = (sum & 0xffff) + (sum >> 16);
  hc = static_cast<uint16_t>(~sum);
  std::memcpy(ip + 10, &hc, 2);
}

// Transport checksum of an IPv4 TCP/UDP/ICMP payload (pseudo-header for TCP/UDP).
uint16_t ipv4_l4_checksum(const uint8_t* ip);

}  // namespace dpgate::net
