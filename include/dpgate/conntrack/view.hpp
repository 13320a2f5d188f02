// The conntrack view rule evaluation reads (`-m conntrack`, `-m state`):
// ct state bits, status, direction, connmark, seconds left and both tuples,
// as netfilter reports them for a packet. Built by the owning worker per
// packet from a lookup / track result; plain values, any thread may read.
#pragma once

#include <cstdint>

#include "dpgate/conntrack/entry.hpp"
#include "dpgate/conntrack/table.hpp"
#include "dpgate/conntrack/track.hpp"
#include "dpgate/net/addr.hpp"

namespace dpgate::conntrack {

// xt_conntrack's state bits (XT_CONNTRACK_STATE_*); the same values as
// rules::ct_state, so the worker copies them straight into rules::Packet.
namespace ct_state {
inline constexpr uint16_t kInvalid = 1u << 0;
inline constexpr uint16_t kEstablished = 1u << 1;
inline constexpr uint16_t kRelated = 1u << 2;
inline constexpr uint16_t kNew = 1u << 3;
inline constexpr uint16_t kUntracked = 1u << 6;
inline constexpr uint16_t kSnat = 1u << 7;  // virtual: the flow is source-translated
inline constexpr uint16_t kDnat = 1u << 8;  // virtual: the flow is destination-translated
}  // namespace ct_state

struct CtView {
  uint16_t state = ct_state::kInvalid;
  uint16_t status = 0;  // status:: bits
  Direction dir = Direction::kOriginal;
  bool has_flow = false;  // false for INVALID and UNTRACKED: --ctstatus etc. never match
  // The flow exists (an earlier packet created it and chose its NAT
  // binding): the nat table is not traversed again, even while the state is
  // still NEW (nf_nat_inet_fn walks it only for a conntrack without binding).
  bool confirmed = false;
  uint32_t mark = 0;
  uint32_t expire_s = 0;
  net::FiveTuple orig, reply;
};

// A packet of an existing flow after Table::track returned `r` (not
// kReopen: that packet is handled as new). ctinfo as nf_conntrack_in sets
// it: every reply-direction packet is ESTABLISHED; an original-direction
// one is NEW until the flow has seen a reply (so retransmitted SYNs stay
// NEW), ESTABLISHED after. kInvalid gives the INVALID view.
CtView ct_view(const Table& t, const Entry& e, Direction dir, TrackResult r, uint64_t now);

// ct_view() in two parts for the data plane's fast path: the scalars
// (state, status, direction, and the expiry when `with_expire`: a
// division per packet that only --ctexpire needs) written into `v` now, the
// 80 bytes of tuples by ct_view_tuples() only when a rule will read them (an
// established packet usually meets no rule). The tuples of an entry never
// change, so filling them later gives the same view. ct_view_scalars()
// returns false when `v` is already complete (the INVALID view). The
// connmark is not filled: it lies in the entry's second line, and the data
// plane reads it only when a rule reads or sets it (packet_field::kCtMark).
// Inline: the data plane builds one per tracked packet.
bool ct_view_scalars(CtView& v, const Table& t, const Entry& e, Direction dir, TrackResult r, uint64_t now,
                     bool with_expire = true);
void ct_view_tuples(CtView& v, const Entry& e);

// The first packet of a connection, before Table::insert: NEW, with the
// reply tuple as NAT has chosen it so far (invert(orig) before any), and
// the SNAT/DNAT bits that implies. Like the kernel's unconfirmed conntrack
// it has no status bits yet besides NAT's and 0 seconds left.
CtView ct_view_new(const net::FiveTuple& orig, const net::FiveTuple& reply);

// An ICMP error RELATED to the flow Table::find_related returned.
CtView ct_view_related(const Table& t, const Entry& e, Direction dir, uint64_t now);

CtView ct_view_invalid();
CtView ct_view_untracked();  // -j NOTRACK / -j CT --notrack

// The state bits of a flow's NAT (the virtual SNAT / DNAT states).
constexpr uint16_t nat_state_bits(uint16_t st) {
  return static_cast<uint16_t>(((st & status::kSrcNat) ? ct_state::kSnat : 0) |
                               ((st & status::kDstNat) ? ct_state::kDnat : 0));
}

// ctinfo of a tracked packet from the flow's status bits: every
// reply-direction packet is ESTABLISHED, an original-direction one only once
// the flow has seen a reply.
constexpr uint16_t tracked_state(uint16_t flow_status, Direction dir) {
  const bool established = dir == Direction::kReply || (flow_status & status::kSeenReply);
  return established ? ct_state::kEstablished : ct_state::kNew;
}
constexpr uint16_t tracked_state(const Entry& e, Direction dir) { return tracked_state(e.status, dir); }

// ct_view_scalars() without the expiry, in two steps for the data plane:
// ct_view_snapshot() when the packet is tracked, and ct_view_complete() only
// when a rule is about to read the view (an established packet usually meets
// none). The snapshot is what a later packet of the same flow in the burst
// may change, the status bits, and that the flow is confirmed, which is all
// walks_nat() reads; the rest follows from the status and the direction.
inline void ct_view_snapshot(CtView& v, const Entry& e) {
  v.status = e.status;
  v.confirmed = true;
}
// The rest, for a packet whose ctinfo gives `state` (no expiry).
inline void ct_view_complete(CtView& v, Direction dir, uint16_t state) {
  v.state = static_cast<uint16_t>(state | nat_state_bits(v.status));
  v.dir = dir;
  v.has_flow = true;
  v.expire_s = 0;
}
inline void ct_view_complete(CtView& v, Direction dir) { ct_view_complete(v, dir, tracked_state(v.status, dir)); }

// The scalars of a packet of flow `e` whose ctinfo gives `state`, but the mark.
inline void ct_view_fill_scalars(CtView& v, const Table& t, const Entry& e, Direction dir, uint16_t state,
                                 uint64_t now, bool with_expire) {
  ct_view_snapshot(v, e);
  ct_view_complete(v, dir, state);
  if (with_expire) v.expire_s = t.seconds_left(e, now);
}

inline bool ct_view_scalars(CtView& v, const Table& t, const Entry& e, Direction dir, TrackResult r, uint64_t now,
                            bool with_expire) {
  if (r == TrackResult::kInvalid || r == TrackResult::kReopen) [[unlikely]] {
    v = ct_view_invalid();
    return false;
  }
  ct_view_fill_scalars(v, t, e, dir, tracked_state(e, dir), now, with_expire);
  return true;
}

}  // namespace dpgate::conntrack
