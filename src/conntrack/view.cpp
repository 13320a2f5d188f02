// Building the ct view of a packet, as xt_conntrack's state bits come from
// ctinfo and ct->status (conntrack_mt / state_mt).
#include "dpgate/conntrack/view.hpp"

namespace dpgate::conntrack {

namespace {

CtView from_entry(const Table& t, const Entry& e, Direction dir, uint16_t state, uint64_t now) {
  CtView v;
  ct_view_fill_scalars(v, t, e, dir, state, now, true);
  v.mark = e.mark;
  ct_view_tuples(v, e);
  return v;
}

}  // namespace

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
