// parse_frame on arbitrary bytes. The frame is copied into a buffer of exactly
// its length, so ASan reports any read past the end; on success the metadata
// must describe a frame the later stages can trust without checking again.
#include <cstdint>
#include <cstring>
#include <vector>

#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"
#include "invariant.hpp"

using namespace dpgate;
using fuzz::invariant;

namespace {

void check_ipv4(const std::vector<uint8_t>& f, const net::PacketMeta& m) {
  const uint32_t len = static_cast<uint32_t>(f.size());
  invariant(m.l3_len >= 20 && m.l3_len <= 60 && m.l3_len % 4 == 0, "IPv4 header length is 20..60, a multiple of 4");
  invariant(m.ip_total_len >= m.l3_len, "total length covers the header");
  invariant(m.l2_len + uint32_t{m.ip_total_len} <= len, "the datagram lies inside the frame");
  const uint8_t* ip = f.data() + m.l2_len;
  invariant((ip[0] >> 4) == 4, "version 4");
  invariant(net::checksum(ip, m.l3_len) == 0, "the header checksum is valid");
  invariant(m.ttl == ip[8] && m.tuple.proto == ip[9], "TTL and protocol are the header's");
  invariant(std::memcmp(m.tuple.src.bytes.data(), ip + 12, 4) == 0, "source address is the header's");
  invariant(std::memcmp(m.tuple.dst.bytes.data(), ip + 16, 4) == 0, "destination address is the header's");
  invariant(!net::is_martian_source(net::to_host(m.tuple.src.v4())), "martian sources are rejected");
  const uint8_t dst_net = ip[16];
  invariant(dst_net != 0 && dst_net != 127, "martian destinations are rejected");
  const uint16_t frag = static_cast<uint16_t>((ip[6] << 8) | ip[7]);
  const bool later = (frag & 0x1fff) != 0;
  invariant(later == (m.fragment == net::Fragment::kLater), "later fragments are marked as such");
  if (later) return;
  const uint32_t l4_len = m.ip_total_len - m.l3_len;
  switch (m.tuple.proto) {
    case net::kProtoTcp:
      invariant(l4_len >= 20 && (ip[m.l3_len + 12] >> 4) * 4u <= l4_len, "the TCP header is inside the datagram");
      break;
    case net::kProtoUdp:
      invariant(l4_len >= 8, "the UDP header is inside the datagram");
      break;
    case net::kProtoIcmp:
      invariant(l4_len >= 8, "the ICMP header is inside the datagram");
      invariant(m.icmp_type == ip[m.l3_len], "ICMP type is the header's");
      break;
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> frame(data, data + size);
  net::PacketMeta meta;
  const net::DropReason reason = net::parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), meta);
  invariant(reason < net::DropReason::kCount, "the reason is a known one");
  invariant(!net::drop_reason_name(reason).empty(), "every reason has a name");
  net::PacketMeta again;
  invariant(net::parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), again) == reason,
            "parsing is deterministic");
  net::PacketMeta general;
  invariant(net::parse_any_frame(frame.data(), static_cast<uint32_t>(frame.size()), general, {}) == reason,
            "the inline common-frame path decides as the general parser");
  invariant(reason != net::DropReason::kNone || std::memcmp(&meta, &general, sizeof meta) == 0,
            "the inline common-frame path fills the metadata as the general parser");
  if (reason != net::DropReason::kNone) return 0;
  invariant(meta.l2_len == (meta.has_vlan ? 18 : 14), "l2_len is 14, or 18 with a VLAN tag");
  invariant(meta.l2_len <= frame.size(), "the Ethernet header is inside the frame");
  switch (meta.l3) {
    case net::L3Kind::kIpv4:
      check_ipv4(frame, meta);
      break;
    case net::L3Kind::kArp:
      invariant(meta.l2_len + 28u <= frame.size(), "an ARP body is 28 bytes inside the frame");
      break;
    case net::L3Kind::kIpv6:
      break;
  }
  return 0;
}
