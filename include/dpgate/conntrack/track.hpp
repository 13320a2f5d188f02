// Per-protocol connection tracking rules, as netfilter's nf_conntrack_proto_*
// apply them: which packets may start a connection, the TCP state machine
// (tcp_conntracks[2][6][TCP_CONNTRACK_MAX]) and the ICMP type classes. Pure
// functions of their arguments; any thread. Table::track applies them.
#pragma once

#include <cstdint>

#include "dpgate/conntrack/entry.hpp"
#include "dpgate/conntrack/timeouts.hpp"
#include "dpgate/net/addr.hpp"

namespace dpgate::conntrack {

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;
inline constexpr uint8_t kTcpEce = 0x40;
inline constexpr uint8_t kTcpCwr = 0x80;

inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpEchoRequest = 8;

// What tracking reads from one packet besides its tuple. The worker fills it
// from PacketMeta and, for TCP, the header's sequence numbers (host order).
struct L4Info {
  uint8_t tcp_flags = 0;
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  uint8_t pad = 0;
  uint32_t tcp_seq = 0;
  uint32_t tcp_ack = 0;
  uint16_t l4_payload_len = 0;  // TCP payload bytes (for the segment's end)
  uint16_t ip_len = 0;          // IP total length, for the byte counters
};

// The outcome of tracking one packet of an existing flow.
enum class TrackResult : uint8_t {
  kAccept,   // state and timeout updated, packet counted
  kIgnore,   // netfilter's sIG: passes with the flow's ct state, nothing updated
  kInvalid,  // ct state INVALID (the -NF_ACCEPT verdicts); the flow is unchanged
  kReopen,   // -NF_REPEAT: a SYN reopens a closed flow; the old entry is gone,
             // handle the packet as the first of a new connection
};

// get_conntrack_index(): the flag class that indexes the TCP table.
enum class TcpFlagClass : uint8_t { kSyn, kSynAck, kFin, kAck, kRst, kNone };
inline constexpr unsigned kTcpFlagClassCount = 6;

constexpr TcpFlagClass tcp_flag_class(uint8_t flags) {
  if (flags & kTcpRst) return TcpFlagClass::kRst;
  if (flags & kTcpSyn) return (flags & kTcpAck) ? TcpFlagClass::kSynAck : TcpFlagClass::kSyn;
  if (flags & kTcpFin) return TcpFlagClass::kFin;
  if (flags & kTcpAck) return TcpFlagClass::kAck;
  return TcpFlagClass::kNone;
}

// Entry::tcp_last bits: netfilter's last_index / last_dir, the per-direction
// IP_CT_TCP_FLAG_CLOSE_INIT and the last_flags it consults.
inline constexpr uint8_t kLastIndexMask = 0x07;
inline constexpr uint8_t kLastDirReply = 0x08;
inline constexpr uint8_t kCloseInitOrig = 0x10;
inline constexpr uint8_t kCloseInitReply = 0x20;
inline constexpr uint8_t kSimultaneousOpen = 0x40;  // IP_CT_TCP_SIMULTANEOUS_OPEN
inline constexpr uint8_t kChallengeAck = 0x80;      // IP_CT_EXP_CHALLENGE_ACK

// tcp_last with `cls` and `dir` as the last segment seen.
constexpr uint8_t with_last(uint8_t bits, TcpFlagClass cls, Direction dir) {
  static_assert(kLastDirReply == 1u << 3 && static_cast<uint8_t>(Direction::kReply) == 1);
  return static_cast<uint8_t>((bits & ~(kLastIndexMask | kLastDirReply)) | static_cast<uint8_t>(cls) |
                              static_cast<uint8_t>(dir) << 3);
}

// The flags that pick a TCP segment's flag class and its validity; PSH,
// ECE and CWR play no part in either.
inline constexpr uint8_t kTcpClassFlags = kTcpFin | kTcpSyn | kTcpRst | kTcpAck | kTcpUrg;

// tcp_error()'s tcp_valid_flags: the combinations of FIN/SYN/RST/ACK/URG a
// tracked TCP packet may carry (PSH, ECE and CWR are ignored). Anything else
// is INVALID before the state table is consulted.
bool tcp_flags_valid(uint8_t flags);

// One cell of tcp_conntracks: the next state, or one of two verdicts.
struct TcpStep {
  enum class Kind : uint8_t { kState, kIgnore, kInvalid } kind = Kind::kInvalid;
  TcpState state = TcpState::kNone;
};
TcpStep tcp_transition(Direction dir, TcpFlagClass cls, TcpState from);

// Whether a packet that matched no entry may start a connection
// (tcp_new / udp / icmp_new's valid_new / generic). TCP: a SYN, or with
// tcp_loose a mid-stream ACK; never a SYN/ACK, FIN, RST or flagless
// segment. ICMP: the query types (echo, timestamp, info, address mask)
// only; errors are looked up with Table::find_related instead, and a reply
// without a request is INVALID.
bool may_start_flow(const net::FiveTuple& t, const L4Info& p, const Timeouts& timeouts);

// ICMP types that carry a quoted packet (icmp_is_err): destination
// unreachable, source quench, redirect, time exceeded, parameter problem.
constexpr bool is_icmp_error(uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

// The reply type of an ICMP query type (echo 8 -> 0, timestamp 13 -> 14,
// info 15 -> 16, address mask 17 -> 18), or 255 when `type` is not a query.
constexpr uint8_t icmp_reply_type(uint8_t type) {
  switch (type) {
    case 8: return 0;
    case 13: return 14;
    case 15: return 16;
    case 17: return 18;
    default: return 255;
  }
}

}  // namespace dpgate::conntrack
