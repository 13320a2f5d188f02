#include "dpgate/net/packet.hpp"

#include <cstring>

#include "dpgate/net/checksum.hpp"

namespace dpgate::net {

namespace {

inline uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

constexpr uint32_t kArpIpv4Len = 28;
constexpr uint32_t kTcpMinLen = 20;
constexpr uint32_t kUdpLen = 8;
constexpr uint32_t kIcmpMinLen = 8;
constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpEchoRequest = 8;

DropReason parse_l4(const uint8_t* l4, uint32_t l4_len, PacketMeta& meta) {
  switch (meta.tuple.proto) {
    case kProtoTcp: {
      if (l4_len < kTcpMinLen) return DropReason::kTruncatedL4Header;
      const uint32_t data_offset = (l4[12] >> 4) * 4u;
      if (data_offset < kTcpMinLen || data_offset > l4_len) return DropReason::kBadTcpHeaderLength;
      std::memcpy(&meta.tuple.src_port, l4, 2);
      std::memcpy(&meta.tuple.dst_port, l4 + 2, 2);
      meta.tcp_flags = l4[13];
      return DropReason::kNone;
    }
    case kProtoUdp:
      if (l4_len < kUdpLen) return DropReason::kTruncatedL4Header;
      std::memcpy(&meta.tuple.src_port, l4, 2);
      std::memcpy(&meta.tuple.dst_port, l4 + 2, 2);
      return DropReason::kNone;
    case kProtoIcmp:
      if (l4_len < kIcmpMinLen) return DropReason::kTruncatedL4Header;
      meta.icmp_type = l4[0];
      meta.icmp_code = l4[1];
      // Echo flows are identified by their identifier, as netfilter does.
      if (meta.icmp_type == kIcmpEchoRequest || meta.icmp_type == kIcmpEchoReply) {
        std::memcpy(&meta.tuple.src_port, l4 + 4, 2);
      }
      return DropReason::kNone;
    default:
      return DropReason::kNone;
  }
}

}  // namespace

DropReason parse_any_frame(const uint8_t* frame, uint32_t frame_len, PacketMeta& meta, ParseOptions options) {
  meta = PacketMeta{};
  if (frame_len < kEthHeaderLen) return DropReason::kTruncatedEthernet;
  uint16_t ether_type = load_be16(frame + 12);
  uint32_t l2_len = kEthHeaderLen;
  if (ether_type == kEtherTypeVlan) {
    if (frame_len < kEthHeaderLen + kVlanTagLen) return DropReason::kTruncatedEthernet;
    meta.has_vlan = true;
    meta.vlan_tci = load_be16(frame + 14);
    ether_type = load_be16(frame + 16);
    l2_len += kVlanTagLen;
  }
  meta.l2_len = static_cast<uint16_t>(l2_len);

  switch (ether_type) {
    case kEtherTypeIpv4:
      break;
    case kEtherTypeArp:
      meta.l3 = L3Kind::kArp;
      return frame_len - l2_len < kArpIpv4Len ? DropReason::kMalformedArp : DropReason::kNone;
    case kEtherTypeIpv6:
      meta.l3 = L3Kind::kIpv6;
      meta.tuple.family = Family::kIpv6;
      return DropReason::kNone;
    default:
      return DropReason::kUnsupportedEtherType;
  }

  const uint8_t* ip = frame + l2_len;
  const uint32_t avail = frame_len - l2_len;
  if (avail < 20) return DropReason::kTruncatedIpHeader;
  if ((ip[0] >> 4) != 4) return DropReason::kBadIpVersion;
  const uint32_t ihl = (ip[0] & 0x0f) * 4u;
  if (ihl < 20 || ihl > avail) return DropReason::kBadIpHeaderLength;
  const uint32_t total_len = load_be16(ip + 2);
  // Frames may carry Ethernet padding after the datagram, never less than it.
  if (total_len < ihl || total_len > avail) return DropReason::kBadIpTotalLength;
  if (!options.ip_checksum_verified && !ipv4_header_checksum_ok(ip, ihl)) return DropReason::kBadIpChecksum;

  meta.l3 = L3Kind::kIpv4;
  meta.l3_len = static_cast<uint16_t>(ihl);
  meta.ip_total_len = static_cast<uint16_t>(total_len);
  meta.ttl = ip[8];
  meta.tuple.family = Family::kIpv4;
  meta.tuple.proto = ip[9];
  std::memcpy(meta.tuple.src.bytes.data(), ip + 12, 4);
  std::memcpy(meta.tuple.dst.bytes.data(), ip + 16, 4);

  const uint32_t src = to_host(meta.tuple.src.v4());
  const uint32_t dst = to_host(meta.tuple.dst.v4());
  if (is_martian_source(src)) return DropReason::kMartianSource;
  if (is_martian_destination(dst)) return DropReason::kMartianDestination;

  const uint16_t frag = load_be16(ip + 6);
  const bool more_fragments = (frag & 0x2000) != 0;
  const uint16_t offset = frag & 0x1fff;
  if (offset != 0) {
    meta.fragment = Fragment::kLater;
    return DropReason::kNone;
  }
  meta.fragment = more_fragments ? Fragment::kFirst : Fragment::kNone;
  return parse_l4(ip + ihl, total_len - ihl, meta);
}

}  // namespace dpgate::net
