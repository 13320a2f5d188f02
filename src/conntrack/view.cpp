// Building the ct view of a packet, as xt_conntrack's state bits come from
// ctinfo and ct->status (conntrack_mt / state_mt).
#include "dpgate/conntrack/view.hpp"

namespace dpgate::conntrack {

namespace {

uint16_t nat_state_bits(uint16_t st) {
  uint16_t bits = 0;
  if (st & status::kSrcNat) bits |= ct_state::kSnat;
  if (st & status::kDstNat) bits |= ct_state::kDnat;
  return bits;
}

void scalars_from_entry(CtView& v, const Table& t, const Entry& e, Direction dir, uint16_t state, uint64_t now,
                        bool with_expire = true) {
  v.state = static_cast<uint16_t>(state | nat_state_bits(e.status));
  v.status = e.status;
  v.dir = dir;
  v.has_flow = true;
  v.confirmed = true;
  v.mark = e.mark;
  v.expire_s = with_expire ? t.seconds_left(e, now) : 0;
}

CtView from_entry(const Table& t, const Entry& e, Direction dir, uint16_t state, uint64_t now) {
  CtView v;
  scalars_from_entry(v, t, e, dir, state, now);
  ct_view_tuples(v, e);
  return v;
}

uint16_t tracked_state(const Entry& e, Direction dir) {
  const bool established = dir == Direction::kReply || (e.status & status::kSeenReply);
  return established ? ct_state::kEstablished : ct_state::kNew;
}

}  // namespace

bool ct_view_scalars(CtView& v, const Table& t, const Entry& e, Direction dir, TrackResult r, uint64_t now,
                     bool with_expire) {
  if (r == TrackResult::kInvalid || r == TrackResult::kReopen) {
    v = ct_view_invalid();
    return false;
  }
  scalars_from_entry(v, t, e, dir, tracked_state(e, dir), now, with_expire);
  return true;
}

void ct_view_tuples(CtView& v, const Entry& e) {
  v.orig = e.orig;
  v.reply = e.reply();
}

CtView ct_view(const Table& t, const Entry& e, Direction dir, TrackResult r, uint64_t now) {
  if (r == TrackResult::kInvalid || r == TrackResult::kReopen) return ct_view_invalid();
  return from_entry(t, e, dir, tracked_state(e, dir), now);
}

CtView ct_view_new(const net::FiveTuple& orig, const net::FiveTuple& reply) {
  CtView v;
  v.status = nat_status(orig, reply);
  v.state = static_cast<uint16_t>(ct_state::kNew | nat_state_bits(v.status));
  v.dir = Direction::kOriginal;
  v.has_flow = true;
  v.orig = orig;
  v.reply = reply;
  return v;
}

CtView ct_view_related(const Table& t, const Entry& e, Direction dir, uint64_t now) {
  return from_entry(t, e, dir, ct_state::kRelated, now);
}

CtView ct_view_invalid() { return CtView{}; }

CtView ct_view_untracked() {
  CtView v;
  v.state = ct_state::kUntracked;
  return v;
}

}  // namespace dpgate::conntrack
