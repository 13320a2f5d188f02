// Per-packet metadata and the header parser that fills it. Parsing reads only
// the frame's bytes: no mbuf, no EAL, so unit and fuzz tests call it directly.
// Any thread; workers call it on every received frame.
#pragma once

#include <cstdint>

#include "dpgate/net/addr.hpp"
#include "dpgate/net/drop_reason.hpp"

namespace dpgate::net {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint32_t kEthHeaderLen = 14;
inline constexpr uint32_t kVlanTagLen = 4;

enum class L3Kind : uint8_t { kIpv4, kArp, kIpv6 };

enum class Fragment : uint8_t {
  kNone,   // not fragmented
  kFirst,  // offset 0, more fragments follow: L4 header present
  kLater,  // offset > 0: no L4 header
};

// What parsing learned about one frame. Filled by parse_frame(); read by every
// later stage of the worker pipeline. Lives in the worker's burst arrays.
struct PacketMeta {
  FiveTuple tuple;           // addresses, ports (echo id for ICMP echo), proto
  uint16_t l2_len = 0;       // Ethernet header incl. VLAN tag
  uint16_t l3_len = 0;       // IP header length (IHL * 4)
  uint16_t ip_total_len = 0; // IPv4 total length
  uint16_t vlan_tci = 0;     // host order; 0 when untagged
  L3Kind l3 = L3Kind::kIpv4;
  Fragment fragment = Fragment::kNone;
  uint8_t ttl = 0;
  uint8_t tcp_flags = 0;
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  bool has_vlan = false;
  uint8_t pad = 0;
};
static_assert(sizeof(PacketMeta) == 56);

struct ParseOptions {
  bool ip_checksum_verified = false;  // the NIC already checked it (RTE_MBUF_F_RX_IP_CKSUM_GOOD)
};

// Parses Ethernet (optionally one 802.1Q tag), then IPv4 with RFC 1812 §5.2.2
// checks (version, IHL, total length, header checksum), then the TCP/UDP/ICMP
// header of unfragmented packets and first fragments. ARP frames are only
// length-checked here. Returns kNone on success, else why the frame is bad.
DropReason parse_frame(const uint8_t* frame, uint32_t frame_len, PacketMeta& meta,
                       ParseOptions options = {});

// RFC 1812 §5.3.7 martians: sources a router must never forward from.
bool is_martian_source(uint32_t host_addr);

}  // namespace dpgate::net
