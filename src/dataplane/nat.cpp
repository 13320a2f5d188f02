#include "dpgate/dataplane/nat.hpp"

#include <cstring>

#include "dpgate/net/checksum.hpp"

namespace dpgate::dataplane {

namespace {

constexpr uint32_t kQuoteMin = 20 + 8;

uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Where a protocol keeps its checksum, and whether the pseudo-header (and so
// the addresses) is part of it.
struct L4Checksum {
  int offset = -1;
  bool pseudo = false;
  bool zero_means_none = false;
};

L4Checksum l4_checksum_of(uint8_t proto) {
  switch (proto) {
    case net::kProtoTcp: return {16, true, false};
    case net::kProtoUdp: return {6, true, true};
    case net::kProtoIcmp: return {2, false, false};
    default: return {};
  }
}

// Rewrites one side of an IPv4 header + first L4 bytes at `ip`, adjusting the
// IP checksum and, if `l4_sum_present`, the transport checksum.
void rewrite_headers(uint8_t* ip, uint32_t ihl, uint8_t proto, bool has_l4, bool l4_sum_present,
                     NatSide side, uint32_t addr_host, uint16_t port_host, bool icmp_echo) {
  const uint32_t new_addr = net::bswap32(addr_host);
  uint8_t* addr_at = ip + (side == NatSide::kSource ? 12 : 16);
  const uint32_t old_addr = load32(addr_at);
  std::memcpy(addr_at, &new_addr, 4);
  store16(ip + 10, net::checksum_adjust32(load16(ip + 10), old_addr, new_addr));
  if (!has_l4) return;

  uint8_t* l4 = ip + ihl;
  const L4Checksum sum = l4_checksum_of(proto);
  uint8_t* port_at = nullptr;
  if (proto == net::kProtoTcp || proto == net::kProtoUdp) {
    port_at = l4 + (side == NatSide::kSource ? 0 : 2);
  } else if (icmp_echo) {
    port_at = l4 + 4;  // the identifier plays both ports' part
  }
  const uint16_t new_port = net::bswap16(port_host);
  const uint16_t old_port = port_at ? load16(port_at) : new_port;
  if (port_at) store16(port_at, new_port);
  if (!l4_sum_present || sum.offset < 0) return;
  uint16_t c = load16(l4 + sum.offset);
  if (sum.zero_means_none && c == 0) return;
  if (sum.pseudo) c = net::checksum_adjust32(c, old_addr, new_addr);
  c = net::checksum_adjust16(c, old_port, new_port);
  if (sum.zero_means_none && c == 0) c = 0xffff;
  store16(l4 + sum.offset, c);
}

bool is_echo(uint8_t proto, uint8_t type) { return proto == net::kProtoIcmp && (type == 0 || type == 8); }

}  // namespace

void nat_rewrite_any(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port) {
  const bool has_l4 = meta.fragment != net::Fragment::kLater;
  rewrite_headers(ip, meta.l3_len, meta.tuple.proto, has_l4, true, side, addr, port,
                  is_echo(meta.tuple.proto, meta.icmp_type));
}

bool icmp_quoted_tuple(const uint8_t* ip, const net::PacketMeta& meta, net::FiveTuple& quoted) {
  const uint32_t icmp_len = meta.ip_total_len - meta.l3_len;
  if (icmp_len < 8 + kQuoteMin) return false;
  const uint8_t* inner = ip + meta.l3_len + 8;
  const uint32_t inner_ihl = (inner[0] & 0x0f) * 4u;
  if ((inner[0] >> 4) != 4 || inner_ihl < 20 || icmp_len < 8 + inner_ihl + 8) return false;
  quoted = net::FiveTuple{};
  quoted.family = net::Family::kIpv4;
  quoted.proto = inner[9];
  std::memcpy(quoted.src.bytes.data(), inner + 12, 4);
  std::memcpy(quoted.dst.bytes.data(), inner + 16, 4);
  const uint8_t* l4 = inner + inner_ihl;
  if (quoted.proto == net::kProtoTcp || quoted.proto == net::kProtoUdp) {
    std::memcpy(&quoted.src_port, l4, 2);
    std::memcpy(&quoted.dst_port, l4 + 2, 2);
  } else if (is_echo(quoted.proto, l4[0])) {
    std::memcpy(&quoted.src_port, l4 + 4, 2);
  }
  return true;
}

bool nat_rewrite_icmp_quote(uint8_t* ip, const net::PacketMeta& meta, NatSide side, uint32_t addr, uint16_t port) {
  net::FiveTuple unused;
  if (!icmp_quoted_tuple(ip, meta, unused)) return false;
  uint8_t* icmp = ip + meta.l3_len;
  uint8_t* inner = icmp + 8;
  const uint32_t inner_ihl = (inner[0] & 0x0f) * 4u;
  const uint32_t icmp_len = meta.ip_total_len - meta.l3_len;
  // The quote may stop short of the transport checksum: fix it only when the
  // quoted transport header is whole (as nf_nat_icmp_reply_translation).
  const L4Checksum sum = l4_checksum_of(inner[9]);
  const bool l4_sum_present = sum.offset >= 0 && icmp_len >= 8 + inner_ihl + static_cast<uint32_t>(sum.offset) + 2;
  rewrite_headers(inner, inner_ihl, inner[9], true, l4_sum_present, side, addr, port,
                  is_echo(inner[9], inner[inner_ihl]));
  store16(icmp + 2, 0);
  store16(icmp + 2, net::checksum(icmp, icmp_len));
  return true;
}

}  // namespace dpgate::dataplane
