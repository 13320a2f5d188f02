// Per-packet metadata and the header parser that fills it. Parsing reads only
// the frame's bytes: no mbuf, no EAL, so unit and fuzz tests call it directly.
// Any thread; workers call it on every received frame.
#pragma once

#include <array>
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

// A set of first octets as a 256-bit mask: one test per address where a
// chain of compares on the octet cost 7-13 instructions on every packet.
struct OctetSet {
  uint64_t bits[4] = {};
  constexpr OctetSet with(uint32_t first, uint32_t last) const {
    OctetSet s = *this;
    for (uint32_t o = first; o <= last; ++o) s.bits[o >> 6] |= uint64_t{1} << (o & 63);
    return s;
  }
  constexpr bool has_octet_of(uint32_t a) const { return (bits[a >> 30] >> ((a >> 24) & 63)) & 1; }
};

// RFC 1812 §5.3.7 martians: sources a router must never forward from:
// 0.0.0.0/8 ("this network"), 127/8 (loopback), 224/4 (multicast), 240/4
// (class E and the limited broadcast).
inline constexpr OctetSet kMartianSourceOctets = OctetSet{}.with(0, 0).with(127, 127).with(224, 255);
constexpr bool is_martian_source(uint32_t a) { return kMartianSourceOctets.has_octet_of(a); }

// Destinations never forwarded: loopback and "this network" are never valid,
// the limited broadcast and multicast groups are not forwarded (dpgate is no
// multicast router) and never answered with ICMP errors (RFC 1812 5.3.5.1,
// 4.3.2.7).
inline constexpr OctetSet kMartianDestinationOctets = OctetSet{}.with(0, 0).with(127, 127).with(224, 239);
constexpr bool is_martian_destination(uint32_t a) {
  return kMartianDestinationOctets.has_octet_of(a) || a == 0xffffffffu;
}

// parse_plain_frame()'s martian test, from the two addresses' first bytes as
// they lie in the header: one table of 256 bytes, bit 0 set for a martian
// source octet and bit 1 for a martian destination's, two loads where two
// OctetSet tests and the limited-broadcast compare took 17 instructions.
// Octet 255 counts as a martian destination here: the limited broadcast is
// one of its addresses, and parse_any_frame() tells which.
inline constexpr uint8_t kPlainMartianSource = 1, kPlainMartianDestination = 2;
inline constexpr std::array<uint8_t, 256> kPlainMartianOctets = [] {
  std::array<uint8_t, 256> t{};
  for (uint32_t o = 0; o < 256; ++o) {
    if (kMartianSourceOctets.has_octet_of(o << 24)) t[o] |= kPlainMartianSource;
    if (kMartianDestinationOctets.has_octet_of(o << 24) || o == 255) t[o] |= kPlainMartianDestination;
  }
  return t;
}();

// RFC 1812 5.2.2: the IPv4 header checksum verifies when the one's-complement
// sum of the header (ihl bytes, at least 20), checksum field included, is all
// ones. That folded sum F of the 16-bit words is congruent to their plain sum
// modulo 0xffff (2^16 = 1 there: folding a carry back in keeps the residue),
// and for a header that is not all zeros F lies in [1, 0xffff]; so F is 0xffff
// exactly when the plain sum is a nonzero multiple of 0xffff. The plain sum
// is taken a 32-bit word at a time into 64 bits, again the same residue
// (2^32 = 1 too), and the multiple test is one multiply (GCC's divisibility
// check by a constant), where four folds cost twelve instructions.
inline bool ipv4_header_checksum_ok(const uint8_t* ip, uint32_t ihl) {
  auto word = [ip](uint32_t k) {  // word by word: a 20-byte local array went through the stack
    uint32_t v;
    __builtin_memcpy(&v, ip + k, 4);
    return uint64_t{v};
  };
  uint64_t sum = (word(0) + word(4)) + (word(8) + word(12)) + word(16);
  for (uint32_t k = 20; k < ihl; k += 4) [[unlikely]] sum += word(k);
  return sum % 0xffff == 0 && sum != 0;
}

// Parses Ethernet (optionally one 802.1Q tag), then IPv4 with RFC 1812 §5.2.2
// checks (version, IHL, total length, header checksum), then the TCP/UDP/ICMP
// header of unfragmented packets and first fragments. ARP frames are only
// length-checked here. Returns kNone on success, else why the frame is bad.
// Out of line; parse_frame() below is the entry point.
DropReason parse_any_frame(const uint8_t* frame, uint32_t frame_len, PacketMeta& meta, ParseOptions options);

// How much of PacketMeta parse_plain_frame() writes. kRouting is what the
// worker's stages read of a packet when no rules are loaded: l2_len, l3_len,
// ip_total_len, l3, fragment, ttl and has_vlan, not the tuple nor the L4
// fields, whose stores were ~30 of a routed packet's ~250 instructions. A
// path that needs the rest (an ICMP error's quote, a local answer) parses the
// frame again with kAll. parse_any_frame() always writes everything.
enum class MetaFill : uint8_t { kAll, kRouting };

// The frame a router sees most - untagged IPv4 without options, not a
// fragment, TCP or UDP - when it passes every check parse_any_frame() makes:
// fills `meta` as parse_any_frame() would (with kRouting, its routing fields
// only) and returns true. Anything else (another frame, or one that fails a
// check) returns false, and parse_any_frame() decides, with its reason.
// Always inlined: every received frame goes through it, and out of line it
// cost a call and a 56-byte clear before the fields were written (GCC would
// not inline it on its own).
template <MetaFill kFill = MetaFill::kAll>
[[gnu::always_inline]] inline bool parse_plain_frame(const uint8_t* frame, uint32_t frame_len, PacketMeta& meta,
                                                     ParseOptions options) {
  constexpr uint32_t kUdpFrameMin = kEthHeaderLen + 20 + 8;
  if (frame_len < kUdpFrameMin || frame[12] != 0x08 || frame[13] != 0x00) return false;
  const uint8_t* ip = frame + kEthHeaderLen;
  const uint32_t total_len = (uint32_t{ip[2]} << 8) | ip[3];
  // Version 4, IHL 5; a total length that covers IP and UDP headers and lies
  // in the frame; neither MF nor an offset.
  if (ip[0] != 0x45 || total_len < 20 + 8 || total_len > frame_len - kEthHeaderLen || (ip[6] & 0x3f) != 0 ||
      ip[7] != 0) {
    return false;
  }
  const uint8_t proto = ip[9];
  const uint8_t* l4 = ip + 20;
  uint8_t tcp_flags = 0;
  if (proto == kProtoTcp) {
    if (total_len < 20 + 20) return false;  // so l4[12] and l4[13] lie in the frame
    const uint32_t data_offset = (l4[12] >> 4) * 4u;
    if (data_offset < 20 || data_offset > total_len - 20) return false;
    tcp_flags = l4[13];
  } else if (proto != kProtoUdp) {
    return false;
  }
  if (!options.ip_checksum_verified && !ipv4_header_checksum_ok(ip, 20)) return false;
  if (((kPlainMartianOctets[ip[12]] & kPlainMartianSource) | (kPlainMartianOctets[ip[16]] & kPlainMartianDestination)) !=
      0) {
    return false;
  }
  if constexpr (kFill == MetaFill::kAll) {
    be32 src, dst;
    __builtin_memcpy(&src, ip + 12, 4);
    __builtin_memcpy(&dst, ip + 16, 4);
    meta.tuple.src = IpAddr::from_v4(src);
    meta.tuple.dst = IpAddr::from_v4(dst);
    __builtin_memcpy(&meta.tuple.src_port, l4, 2);
    __builtin_memcpy(&meta.tuple.dst_port, l4 + 2, 2);
    meta.tuple.proto = proto;
    meta.tuple.family = Family::kIpv4;
    meta.tuple.pad = 0;
    meta.vlan_tci = 0;
    meta.tcp_flags = tcp_flags;
    meta.icmp_type = 0;
    meta.icmp_code = 0;
    meta.pad = 0;
  }
  meta.l2_len = kEthHeaderLen;
  meta.l3_len = 20;
  meta.ip_total_len = static_cast<uint16_t>(total_len);
  meta.l3 = L3Kind::kIpv4;
  meta.fragment = Fragment::kNone;
  meta.ttl = ip[8];
  meta.has_vlan = false;
  return true;
}

template <MetaFill kFill = MetaFill::kAll>
[[gnu::always_inline]] inline DropReason parse_frame(const uint8_t* frame, uint32_t frame_len, PacketMeta& meta,
                                                     ParseOptions options = {}) {
  if (parse_plain_frame<kFill>(frame, frame_len, meta, options)) [[likely]] return DropReason::kNone;
  return parse_any_frame(frame, frame_len, meta, options);
}

}  // namespace dpgate::net
