// ICMP the router originates or answers: errors quoting a received datagram
// (RFC 792, RFC 1812 §4.3.2) and echo replies. Private to the data plane;
// called by the owning worker on its own packets.
#pragma once

#include <cstdint>

#include "dpgate/net/packet.hpp"

struct rte_mbuf;
struct rte_mempool;

namespace dpgate::dataplane {

inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpUnreachable = 3;
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmpCodeNetUnreachable = 0;
inline constexpr uint8_t kIcmpCodeFragNeeded = 4;
inline constexpr uint8_t kIcmpCodeTtlInTransit = 0;

// RFC 1122 §3.2.2 / RFC 1812 §4.3.2.7: never answer an ICMP error, a later
// fragment, or a packet whose source is not a unicast host.
bool may_send_icmp_error(const net::PacketMeta& meta);

// A new packet (Ethernet header left for the output stage to fill) carrying an
// ICMP error from `src_ip` about the datagram at `ip`: as much of it as fits
// in 576 bytes, as Linux quotes. `mtu` fills the Fragmentation Needed field.
// Returns nullptr when the pool is empty.
rte_mbuf* build_icmp_error(rte_mempool* pool, const uint8_t* ip, uint32_t src_ip, uint8_t type,
                           uint8_t code, uint16_t mtu);

// The TCP RST that REJECT --reject-with tcp-reset sends for the segment at
// `ip`, as netfilter's nf_send_reset: addresses and ports swapped; if the
// segment carried an ACK, seq = its ack_seq, else ack = seq + SYN + FIN +
// payload length with the ACK flag. nullptr for a RST (never answered) or an
// empty pool. The Ethernet header is left for the output stage.
rte_mbuf* build_tcp_reset(rte_mempool* pool, const uint8_t* ip, const net::PacketMeta& meta);

// Turns an echo request (IPv4 header at `ip`) into its reply in place: swaps
// the addresses, sets the type, TTL 64, fixes both checksums. Returns false if
// the ICMP checksum of the request is wrong.
bool echo_request_to_reply(uint8_t* ip, uint16_t ip_total_len);

}  // namespace dpgate::dataplane
