// One tracked connection as the per-worker conntrack table stores it: both
// tuples, the protocol state, netfilter's status bits, the connmark and the
// counters. Entries live inside a Table (table.hpp) and are written only by
// the worker that owns that table; other threads see copies (FlowInfo).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dpgate/net/addr.hpp"

namespace dpgate::conntrack {

// IP_CT_DIR_ORIGINAL / IP_CT_DIR_REPLY.
enum class Direction : uint8_t { kOriginal = 0, kReply = 1 };

constexpr Direction opposite(Direction d) { return static_cast<Direction>(static_cast<uint8_t>(d) ^ 1u); }

// enum tcp_conntrack (uapi nf_conntrack_tcp.h), same numbers, so state
// names and `conntrack -L` output line up with the kernel's.
enum class TcpState : uint8_t {
  kNone = 0,
  kSynSent,
  kSynRecv,
  kEstablished,
  kFinWait,
  kCloseWait,
  kLastAck,
  kTimeWait,
  kClose,
  kSynSent2,
};
inline constexpr unsigned kTcpStateCount = 10;

// IPS_* bits (uapi nf_conntrack_common.h), same numbers: these are what
// `-m conntrack --ctstatus` tests and `conntrack -L` prints.
namespace status {
inline constexpr uint16_t kExpected = 1u << 0;
inline constexpr uint16_t kSeenReply = 1u << 1;
inline constexpr uint16_t kAssured = 1u << 2;
inline constexpr uint16_t kConfirmed = 1u << 3;
inline constexpr uint16_t kSrcNat = 1u << 4;
inline constexpr uint16_t kDstNat = 1u << 5;
inline constexpr uint16_t kSeqAdjust = 1u << 6;
inline constexpr uint16_t kSrcNatDone = 1u << 7;
inline constexpr uint16_t kDstNatDone = 1u << 8;
inline constexpr uint16_t kDying = 1u << 9;
inline constexpr uint16_t kFixedTimeout = 1u << 10;
// The other workers keep redirect stubs for its reply tuple (DESIGN §3):
// when the flow leaves the table, its owner tells them (Table::departures).
inline constexpr uint16_t kRedirected = 1u << 11;
}  // namespace status

enum class EntryKind : uint8_t {
  kFree = 0,
  kFlow,      // a connection owned by this table's worker
  kRedirect,  // DESIGN §3 point 3: "this reply tuple belongs to worker `owner`"
  kDead,      // killed (RST before a reply, reopened): unlinked, freed at begin_burst
  kDeadSwept, // killed while the graveyard was full: freed by the expiry sweep
};

// Reverses a tuple the way nf_ct_invert_tuple does. ICMP keeps its ports:
// the parser puts the echo identifier in src_port for requests and replies
// alike, so a reply's tuple is the request's with the addresses swapped.
constexpr net::FiveTuple invert(const net::FiveTuple& t) {
  net::FiveTuple r = t;
  r.src = t.dst;
  r.dst = t.src;
  if (t.proto != 1) {
    r.src_port = t.dst_port;
    r.dst_port = t.src_port;
  }
  return r;
}

// The status bits NAT implies when a flow's replies carry `reply` instead
// of invert(orig): SRC_NAT when they come back to another source address or
// port (ICMP: identifier), DST_NAT when they come from another destination.
constexpr uint16_t nat_status(const net::FiveTuple& orig, const net::FiveTuple& reply) {
  const bool icmp = orig.proto == 1;
  const bool snat =
      reply.dst != orig.src || (icmp ? reply.src_port != orig.src_port : reply.dst_port != orig.src_port);
  const bool dnat = reply.src != orig.dst || (!icmp && reply.src_port != orig.dst_port);
  return static_cast<uint16_t>((snat ? status::kSrcNat : 0) | (dnat ? status::kDstNat : 0));
}

// 128 bytes, two cache lines, every field naturally aligned. Line 0 holds
// everything a packet of an IPv4 flow needs in either direction: the
// original tuple, the reply tuple's IPv4 addresses and its ports, and what
// per-packet tracking reads and writes. Line 1 holds the reply addresses at
// full width (IPv6, and the whole tuple for the control thread), the
// connmark (read only when a rule reads or sets it) and the protocol's
// extra word. A lookup of an IPv4 key therefore fetches one line.
// Per-flow packet and byte counters, when accounting is on, live beside the
// table (Table::counters), as the kernel keeps them in an extension.
//
// Written by the owning worker only (Table's single writer); never shared.
struct alignas(64) Entry {
  // line 0
  net::FiveTuple orig;
  net::be32 reply_src4{};   // IPv4 flows: reply_src.v4(), reply_dst.v4()
  net::be32 reply_dst4{};
  net::be16 reply_sport{};  // ICMP: the identifier (as the tuple's src_port)
  net::be16 reply_dport{};
  uint32_t deadline = 0;  // in the table's coarse ticks; wraps, compared signed
  uint16_t status = 0;    // status:: bits
  uint8_t epoch = 0;      // the burst that last touched it (Table::begin_burst)
  EntryKind kind = EntryKind::kFree;
  uint8_t proto_state = 0;  // TcpState for TCP, 0 otherwise
  uint8_t tcp_last = 0;     // TCP: last flag class, its direction, close/open flags
  uint8_t owner = 0;        // the worker that owns the flow
  uint8_t flags = 0;        // entry_flag:: bits
  // line 1
  net::IpAddr reply_src;
  net::IpAddr reply_dst;
  // TCP: end sequence of the last ignored segment (netfilter's last_end);
  // UDP: the coarse tick after which a replied flow counts as a stream;
  // ICMP: the request type of the original direction.
  uint32_t aux = 0;
  uint32_t mark = 0;  // the connmark (CONNMARK, -m connmark)

  net::FiveTuple reply() const {
    net::FiveTuple t = orig;
    t.src = reply_src;
    t.dst = reply_dst;
    t.src_port = reply_sport;
    t.dst_port = reply_dport;
    return t;
  }
  net::FiveTuple tuple(Direction d) const { return d == Direction::kOriginal ? orig : reply(); }
  TcpState tcp_state() const { return static_cast<TcpState>(proto_state); }
  bool has(uint16_t bits) const { return (status & bits) == bits; }
  bool is_redirect() const { return kind == EntryKind::kRedirect; }
};
static_assert(sizeof(Entry) == 128, "an entry is two cache lines");
static_assert(alignof(Entry) == 64);
static_assert(offsetof(Entry, flags) == 63, "line 0 ends with the flags");
static_assert(offsetof(Entry, reply_src) == 64, "the full reply addresses open line 1");

// Entry::flags.
namespace entry_flag {
// UDP: the flow has seen a reply and outlived udp_stream_after: a stream
// (aux need not be read again).
inline constexpr uint8_t kUdpStream = 1u << 0;
}  // namespace entry_flag

// A flow's packet and byte counters per direction (nf_conn_acct).
struct Counters {
  uint64_t packets[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};
};

// What a packet of direction `d` looks like after the flow's NAT: the
// inverse of the other direction's tuple. For an untranslated flow this is
// the packet's own tuple. A DNAT'd flow's reply tuple has the backend as
// source, so original packets leave towards the backend; an SNAT'd flow's
// reply tuple has the translated address as destination, so original packets
// leave from it.
inline net::FiveTuple translated(const Entry& e, Direction d) {
  return invert(e.tuple(opposite(d)));
}

// One half of translated(e, d) read straight from the entry: the
// destination (or source) address and port a packet of direction `d`
// carries after NAT; for ICMP the port is the identifier, as in the tuple's
// src_port. The data plane asks this per packet, twice: building and
// inverting whole tuples cost store-forwarding stalls there.
struct Endpoint {
  net::IpAddr addr;
  net::be16 port{};
};
inline Endpoint translated_destination(const Entry& e, Direction d) {
  // dst of invert(T) is T.src, and its port T.src_port (ICMP keeps ports)
  if (opposite(d) == Direction::kOriginal) return {e.orig.src, e.orig.src_port};
  return {e.reply_src, e.reply_sport};
}
inline Endpoint translated_source(const Entry& e, Direction d) {
  const bool icmp = e.orig.proto == 1;
  if (opposite(d) == Direction::kOriginal) return {e.orig.dst, icmp ? e.orig.src_port : e.orig.dst_port};
  return {e.reply_dst, icmp ? e.reply_sport : e.reply_dport};
}

// The same for an IPv4 flow, from the entry's first line alone, the address
// as the four bytes the wire carries: what the data plane rewrites with.
// (An IpAddr built here and compared as two words a moment later stalls on
// store forwarding, twice a packet.)
struct Endpoint4 {
  net::be32 addr{};
  net::be16 port{};
};
inline Endpoint4 translated_destination4(const Entry& e, Direction d) {
  if (opposite(d) == Direction::kOriginal) return {e.orig.src.v4(), e.orig.src_port};
  return {e.reply_src4, e.reply_sport};
}
inline Endpoint4 translated_source4(const Entry& e, Direction d) {
  const bool icmp = e.orig.proto == 1;
  if (opposite(d) == Direction::kOriginal) {
    return {e.orig.dst.v4(), icmp ? e.orig.src_port : e.orig.dst_port};
  }
  return {e.reply_dst4, icmp ? e.reply_sport : e.reply_dport};
}

// Whether a packet of direction `d` leaves with another source (destination)
// than it came with, from the status bits alone: an original packet's
// source moves under SNAT and its destination under DNAT, a reply's the other
// way round. Table::insert sets the bits from the tuples (nat_status) and
// nothing clears them, so these agree with comparing the packet's tuple to
// translated_source() / translated_destination(), for a test per packet.
inline bool rewrites_source(const Entry& e, Direction d) {
  static_assert(status::kDstNat == status::kSrcNat << 1);
  return (e.status & (status::kSrcNat << static_cast<unsigned>(d))) != 0;
}
inline bool rewrites_destination(const Entry& e, Direction d) {
  return (e.status & (status::kDstNat >> static_cast<unsigned>(d))) != 0;
}

// The NAT binding the reply tuple implies (status bits kSrcNat / kDstNat say
// which halves are in use). Addresses and ports in network order.
struct NatBinding {
  bool snat = false;
  bool dnat = false;
  net::IpAddr snat_addr;  // original packets leave from here
  net::be16 snat_port{};
  net::IpAddr dnat_addr;  // original packets go to here
  net::be16 dnat_port{};
};

inline NatBinding nat_binding(const Entry& e) {
  NatBinding b;
  b.snat = (e.status & status::kSrcNat) != 0;
  b.dnat = (e.status & status::kDstNat) != 0;
  b.snat_addr = e.reply_dst;
  b.dnat_addr = e.reply_src;
  if (e.orig.proto == 1) {
    b.snat_port = e.reply_sport;  // the echo identifier
    b.dnat_port = e.reply_sport;
  } else {
    b.snat_port = e.reply_dport;
    b.dnat_port = e.reply_sport;
  }
  return b;
}

}  // namespace dpgate::conntrack
