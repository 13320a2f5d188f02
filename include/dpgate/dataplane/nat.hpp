// Address and port translation on packets in place: the rewrite half of
// DNAT/SNAT/MASQUERADE/REDIRECT, with incremental checksum updates (RFC 1624),
// and the reverse translation of the packet an ICMP error quotes. Workers
// call these on their own packets; no state.
#pragma once

#include <cstdint>

#include "dpgate/net/packet.hpp"

namespace dpgate::dataplane {

enum class NatSide : uint8_t { kSource, kDestination };

// Sets the source or destination address (host order) and port (host order;
// for ICMP echo the identifier) of the IPv4 datagram at `ip`, fixing the IP
// header checksum and the TCP/UDP/ICMP checksum incrementally. Later
// fragments carry no transport header: only the address changes. A UDP
// checksum of 0 (none) stays 0.
void nat_rewrite(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port);

// For an ICMP error at `ip` (already parsed, as `meta`): rewrites the quoted
// datagram's `side` address and port the way nat_rewrite would have rewritten
// the original packet, then recomputes the ICMP checksum. Returns false if
// the quote is too short to hold an IP header and 8 bytes.
bool nat_rewrite_icmp_quote(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port);

// The 5-tuple of the datagram quoted by the ICMP error at `ip` (host order
// addresses in the FiveTuple as parsed). False when the quote is too short.
bool icmp_quoted_tuple(const uint8_t* ip, const net::PacketMeta& meta, net::FiveTuple& quoted);

inline bool is_icmp_error(uint8_t type) { return type == 3 || type == 4 || type == 5 || type == 11 || type == 12; }

}  // namespace dpgate::dataplane
