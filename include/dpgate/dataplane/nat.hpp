// Address and port translation on packets in place: the rewrite half of
// DNAT/SNAT/MASQUERADE/REDIRECT, with incremental checksum updates (RFC 1624),
// and the reverse translation of the packet an ICMP error quotes. Workers
// call these on their own packets; no state.
#pragma once

#include <cstdint>
#include <cstring>

#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"

namespace dpgate::dataplane {

enum class NatSide : uint8_t { kSource, kDestination };

// Sets the source or destination address (host order) and port (host order;
// for ICMP echo the identifier) of the IPv4 datagram at `ip`, fixing the IP
// header checksum and the TCP/UDP/ICMP checksum incrementally. Later
// fragments carry no transport header: only the address changes. A UDP
// checksum of 0 (none) stays 0. Inline for a TCP or UDP header (every
// packet of a translated flow, usually: forced, so that a constant `side`
// folds away); the rest in nat_rewrite_any().
[[gnu::always_inline]] inline void nat_rewrite(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port);
void nat_rewrite_any(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port);

// For an ICMP error at `ip` (already parsed, as `meta`): rewrites the quoted
// datagram's `side` address and port the way nat_rewrite would have rewritten
// the original packet, then recomputes the ICMP checksum. Returns false if
// the quote is too short to hold an IP header and 8 bytes.
bool nat_rewrite_icmp_quote(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port);

// The 5-tuple of the datagram quoted by the ICMP error at `ip` (host order
// addresses in the FiveTuple as parsed). False when the quote is too short.
bool icmp_quoted_tuple(const uint8_t* ip, const net::PacketMeta& meta, net::FiveTuple& quoted);

[[gnu::always_inline]] inline void nat_rewrite(uint8_t* ip, const net::PacketMeta& meta, NatSide side,
                                               uint32_t addr, uint16_t port) {
  const uint8_t proto = meta.tuple.proto;
  if ((proto != net::kProtoTcp && proto != net::kProtoUdp) || meta.fragment == net::Fragment::kLater) [[unlikely]] {
    nat_rewrite_any(ip, meta, side, addr, port);
    return;
  }
  uint8_t* addr_at = ip + (side == NatSide::kSource ? 12 : 16);
  uint8_t* l4 = ip + meta.l3_len;
  uint8_t* port_at = l4 + (side == NatSide::kSource ? 0 : 2);
  uint8_t* l4_sum_at = l4 + (proto == net::kProtoTcp ? 16 : 6);
  const uint32_t new_addr = net::bswap32(addr);
  const uint16_t new_port = net::bswap16(port);
  uint32_t old_addr;
  uint16_t old_port, ip_sum, l4_sum;
  std::memcpy(&old_addr, addr_at, 4);
  std::memcpy(&old_port, port_at, 2);
  std::memcpy(&ip_sum, ip + 10, 2);
  std::memcpy(&l4_sum, l4_sum_at, 2);
  std::memcpy(addr_at, &new_addr, 4);
  std::memcpy(port_at, &new_port, 2);
  const uint32_t addr_delta = net::checksum_delta32(old_addr, new_addr);  // the pseudo-header's too
  ip_sum = net::checksum_apply(ip_sum, addr_delta);
  std::memcpy(ip + 10, &ip_sum, 2);
  if (proto == net::kProtoUdp && l4_sum == 0) return;  // sent without a checksum
  l4_sum = net::checksum_apply(l4_sum, net::checksum_add32(addr_delta, net::checksum_delta16(old_port, new_port)));
  if (proto == net::kProtoUdp && l4_sum == 0) l4_sum = 0xffff;
  std::memcpy(l4_sum_at, &l4_sum, 2);
}

inline bool is_icmp_error(uint8_t type) { return type == 3 || type == 4 || type == 5 || type == 11 || type == 12; }

}  // namespace dpgate::dataplane
