// The conntrack table: preallocated entries, a bucketed hash index holding
// both directions of every flow, early drop, expiry sweep and the walks the
// control messages use. Per-protocol tracking lives in track.cpp.
#include "dpgate/conntrack/table.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

namespace dpgate::conntrack {

namespace {

// A reply key is compared in three parts: its ports against the entry's
// reply ports, its protocol and family (and the zero pad) against the
// original tuple's, its addresses against the reply addresses.
static_assert(offsetof(net::FiveTuple, src_port) == 32);
static_assert(offsetof(net::FiveTuple, proto) == 36);
static_assert(offsetof(Entry, reply_dport) == offsetof(Entry, reply_sport) + 2);

constexpr uint32_t kMaxTicks = 1u << 30;  // keeps signed deadline comparisons exact

// The 128-bit product of a and b, its halves xored.
inline uint64_t mum(uint64_t a, uint64_t b) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
}

}  // namespace

Table::Table(const TableConfig& config)
    : capacity_(config.capacity == 0 ? 1 : config.capacity),
      owner_(config.owner),
      early_drop_buckets_(config.early_drop_buckets == 0 ? 1 : config.early_drop_buckets),
      hz_(config.ticks_per_second == 0 ? 1 : config.ticks_per_second),
      seed_(config.hash_seed),
      timeouts_(config.timeouts) {
  // Both directions are indexed: 2 refs per entry, at most 4 per 7-slot
  // bucket on average when the table is full.
  const uint64_t want = (uint64_t{capacity_} * 2 + 3) / 4;
  uint64_t buckets = 1;
  while (buckets < want) buckets <<= 1;
  mask_ = static_cast<uint32_t>(buckets - 1);

  // A coarse tick is the largest power of two of `now` units not above 4 ms.
  const uint64_t per_4ms = hz_ / 250;
  shift_ = 0;
  while ((uint64_t{2} << shift_) <= per_4ms) ++shift_;

  entries_ = util::HugeArray<Entry>(capacity_);
  if (config.accounting) counters_ = util::HugeArray<Counters>(capacity_);
  buckets_ = util::HugeArray<Bucket>(buckets);
  free_.reserve(capacity_);
  for (uint32_t i = capacity_; i > 0; --i) free_.push_back(i - 1);
  graveyard_.reserve(kGraveyardSize);
  departed_.reserve(kMaxDepartures);

  const Timeouts& t = timeouts_;
  const uint32_t tcp_s[kTcpStateCount] = {t.tcp_syn_sent,    t.tcp_syn_sent,   t.tcp_syn_recv,
                                          t.tcp_established, t.tcp_fin_wait,   t.tcp_close_wait,
                                          t.tcp_last_ack,    t.tcp_time_wait,  t.tcp_close,
                                          t.tcp_syn_sent2};
  for (unsigned i = 0; i < kTcpStateCount; ++i) ticks_.tcp[i] = seconds_to_ticks(tcp_s[i]);
  ticks_.tcp_unack = seconds_to_ticks(t.tcp_unacknowledged);
  ticks_.udp = seconds_to_ticks(t.udp);
  ticks_.udp_stream = seconds_to_ticks(t.udp_stream);
  ticks_.udp_stream_after = seconds_to_ticks(2);  // "still active after two seconds?"
  ticks_.icmp = seconds_to_ticks(t.icmp);
  ticks_.generic = seconds_to_ticks(t.generic);
}

uint32_t Table::seconds_to_ticks(uint32_t seconds) const {
  const unsigned __int128 units = static_cast<unsigned __int128>(seconds) * hz_;
  const unsigned __int128 ticks = units >> shift_;
  if (ticks >= kMaxTicks) return kMaxTicks;
  if (ticks == 0 && seconds != 0) return 1;
  return static_cast<uint32_t>(ticks);
}

// A keyed multiply-fold hash (as wyhash mixes): each pair of 64-bit words,
// xored with the seed (and a constant), multiplied into 128 bits whose
// halves are xored; then once more with the length. An IPv4 tuple's information
// fits two of its five words (the addresses' first 4 bytes; ports,
// protocol, family): two multiplications per lookup, where the mixing
// rounds before took six. Other families hash all 40 bytes. Inlined, as
// key_matches() below: lookup_bulk() runs both for every tracked packet.
[[gnu::always_inline]] inline uint64_t Table::hash(const net::FiveTuple& t) const {
  static_assert(offsetof(net::FiveTuple, src_port) == 32 && sizeof(net::FiveTuple) == 40);
  constexpr uint64_t kP0 = 0xa0761d6478bd642fULL, kP1 = 0xe7037ed1a0b428dbULL, kP2 = 0x8ebc6af09c88c6e3ULL;
  uint64_t w[5];
  if (t.family == net::Family::kIpv4) {
    w[0] = uint64_t{static_cast<uint32_t>(t.src.v4())} | uint64_t{static_cast<uint32_t>(t.dst.v4())} << 32;
    std::memcpy(&w[1], reinterpret_cast<const uint8_t*>(&t) + 32, 8);
    return mum(mum(w[0] ^ seed_ ^ kP0, w[1] ^ seed_) ^ kP1, 16 ^ kP2);
  }
  std::memcpy(w, &t, sizeof(w));
  const uint64_t h = mum(w[0] ^ seed_ ^ kP0, w[1] ^ seed_) ^ mum(w[2] ^ seed_ ^ kP1, w[3] ^ seed_);
  return mum(h ^ kP1, w[4] ^ seed_ ^ kP2);
}

[[gnu::always_inline]] inline bool Table::key_matches(uint32_t ref, const net::FiveTuple& key) const {
  const Entry& e = entries_[ref >> 1];
  // Ports, protocol, family and pad in one word; then the addresses, an
  // IPv4 flow's first 4 bytes each (an IPv4 tuple's other address bytes are
  // zero, the key's and the entry's alike: equal words mean both IPv4).
  const auto* k = reinterpret_cast<const uint8_t*>(&key);
  uint64_t key_word;
  std::memcpy(&key_word, k + 32, 8);
  if ((ref & 1) == 0) {
    if (key.family != net::Family::kIpv4) return std::memcmp(&e.orig, &key, sizeof(key)) == 0;
    uint64_t orig_word;
    std::memcpy(&orig_word, reinterpret_cast<const uint8_t*>(&e.orig) + 32, 8);
    return key_word == orig_word && key.src.v4() == e.orig.src.v4() && key.dst.v4() == e.orig.dst.v4();
  }
  uint64_t ports, tail;
  std::memcpy(&ports, &e.reply_sport, 4);
  std::memcpy(&tail, reinterpret_cast<const uint8_t*>(&e.orig) + 36, 4);
  ports &= 0xffffffffULL;
  if (key_word != (ports | tail << 32)) return false;
  if (key.family == net::Family::kIpv4) {
    return key.src.v4() == e.reply_src4 && key.dst.v4() == e.reply_dst4;
  }
  return key.src == e.reply_src && key.dst == e.reply_dst;
}

uint32_t Table::find_ref(const net::FiveTuple& key, uint64_t h) const {
  const uint32_t sig = signature(h);
  uint32_t b = static_cast<uint32_t>(h) & mask_;
  for (uint32_t probes = 0; probes <= mask_; ++probes) {
    const Bucket& bk = buckets_[b];
    for (uint32_t bits = slots_holding(bk, sig); bits != 0; bits &= bits - 1) {
      const uint32_t ref = bk.ref[std::countr_zero(bits)];
      if (key_matches(ref, key)) return ref;
    }
    if (bk.overflow == 0) break;
    b = (b + 1) & mask_;
  }
  return kNoRef;
}

void Table::link(uint32_t ref, uint64_t h) {
  const uint32_t sig = signature(h);
  uint32_t b = static_cast<uint32_t>(h) & mask_;
  for (;;) {
    Bucket& bk = buckets_[b];
    for (unsigned s = 0; s < kSlots; ++s) {
      if (bk.sig[s] == 0) {
        bk.sig[s] = sig;
        bk.ref[s] = ref;
        return;
      }
    }
    // Sizing keeps the index under 60% full, so a free slot always exists.
    ++bk.overflow;
    b = (b + 1) & mask_;
  }
}

void Table::unlink(uint32_t ref, const net::FiveTuple& key) {
  uint32_t b = static_cast<uint32_t>(hash(key)) & mask_;
  for (uint32_t probes = 0; probes <= mask_; ++probes) {
    Bucket& bk = buckets_[b];
    for (unsigned s = 0; s < kSlots; ++s) {
      if (bk.sig[s] != 0 && bk.ref[s] == ref) {
        bk.sig[s] = 0;
        bk.ref[s] = 0;
        return;
      }
    }
    --bk.overflow;  // link() counted this ref passing through
    b = (b + 1) & mask_;
  }
}

void Table::unlink_entry(uint32_t idx) {
  const Entry& e = entries_[idx];
  if (e.kind == EntryKind::kFlow && (e.status & status::kRedirected) != 0) [[unlikely]] {
    if (departed_.size() < kMaxDepartures) {
      departed_.push_back(e.reply());
    } else {
      stats_.departures_lost.add();
    }
  }
  if (e.kind == EntryKind::kFlow) unlink(idx * 2, e.orig);
  if (e.kind == EntryKind::kFlow || e.kind == EntryKind::kRedirect) unlink(idx * 2 + 1, e.reply());
}

void Table::release(uint32_t idx) {
  entries_[idx] = Entry{};
  free_.push_back(idx);
  --size_;
}

// netfilter's early_drop(): from the new flow's bucket on, the first bucket
// holding an entry that may go loses every such entry at once (the kernel's
// early_drop_list() deletes all the non-assured conntracks of the chain and
// reaps the expired ones it passes), so a flood into a full table pays for
// one bucket scan every few new flows, not one each. Never an ASSURED entry,
// nor one of the current burst: a packet of this burst holds it.
bool Table::evict_for(uint64_t h, uint32_t now_c) {
  uint32_t b = static_cast<uint32_t>(h) & mask_;
  for (unsigned i = 0; i < early_drop_buckets_; ++i, b = (b + 1) & mask_) {
    const Bucket& bk = buckets_[b];
    // The bucket's entries are read one after the other: fetch them all first.
    for (unsigned s = 0; s < kSlots; ++s) {
      if (bk.sig[s] != 0) __builtin_prefetch(&entries_[bk.ref[s] >> 1]);
    }
    // Both directions of one flow may sit in the bucket: an entry once.
    uint32_t gone[kSlots];
    bool dropped[kSlots];
    unsigned n = 0;
    for (unsigned s = 0; s < kSlots; ++s) {
      if (bk.sig[s] == 0) continue;
      const uint32_t idx = bk.ref[s] >> 1;
      if (std::find(gone, gone + n, idx) != gone + n) continue;
      const Entry& e = entries_[idx];
      const bool is_expired = expired(e, now_c);
      if (!is_expired && ((e.status & status::kAssured) != 0 || e.epoch == epoch_)) continue;
      gone[n] = idx;
      dropped[n++] = !is_expired;
    }
    if (n == 0) continue;
    // Unlinking reads each entry's other bucket: fetch those together too.
    for (unsigned k = 0; k < n; ++k) {
      const Entry& e = entries_[gone[k]];
      __builtin_prefetch(&buckets_[static_cast<uint32_t>(hash(e.orig)) & mask_]);
      __builtin_prefetch(&buckets_[static_cast<uint32_t>(hash(e.reply())) & mask_]);
    }
    for (unsigned k = 0; k < n; ++k) {
      unlink_entry(gone[k]);
      release(gone[k]);
      if (dropped[k]) {
        stats_.early_dropped.add();
      } else {
        stats_.expired.add();
      }
    }
    return true;
  }
  return false;
}

uint32_t Table::take_free(uint64_t h, uint32_t now_c, InsertStatus* status) {
  if (free_.empty() && !evict_for(h, now_c)) {
    stats_.refused.add();
    if (status) *status = InsertStatus::kFull;
    return kNoRef;
  }
  const uint32_t idx = free_.back();
  free_.pop_back();
  ++size_;
  if (idx >= high_water_) high_water_ = idx + 1;
  return idx;
}

bool Table::reclaim_if_stale(const net::FiveTuple& t, uint64_t h, uint32_t now_c) {
  return reclaim_if_stale(find_ref(t, h), now_c);
}

bool Table::reclaim_if_stale(uint32_t ref, uint32_t now_c) {
  if (ref == kNoRef) return true;
  const uint32_t idx = ref >> 1;
  if (!expired(entries_[idx], now_c)) return false;
  unlink_entry(idx);
  release(idx);
  stats_.expired.add();
  return true;
}

void Table::begin_burst() {
  for (uint32_t idx : graveyard_) release(idx);
  graveyard_.clear();
  ++epoch_;
}

Entry* Table::lookup(const net::FiveTuple& key, uint64_t now, Direction* dir) {
  const uint32_t ref = find_ref(key, hash(key));
  if (ref == kNoRef) return nullptr;
  Entry& e = entries_[ref >> 1];
  if (expired(e, coarse(now))) return nullptr;
  e.epoch = epoch_;
  *dir = static_cast<Direction>(ref & 1);
  return &e;
}

void Table::lookup_bulk(const net::FiveTuple* keys, unsigned n, uint64_t now, Entry** out, Direction* dir,
                        size_t stride) {
  const uint32_t now_c = coarse(now);
  auto key = [&keys, stride](unsigned i) -> const net::FiveTuple& {
    return *reinterpret_cast<const net::FiveTuple*>(reinterpret_cast<const uint8_t*>(keys) + i * stride);
  };
  while (n > 0) {
    const unsigned m = n < kMaxBulk ? n : kMaxBulk;
    uint64_t h[kMaxBulk];
    uint32_t cand[kMaxBulk];
    for (unsigned i = 0; i < m; ++i) {
      h[i] = hash(key(i));
      __builtin_prefetch(&buckets_[static_cast<uint32_t>(h[i]) & mask_]);
    }
    // First signature hit in the home bucket: prefetch its entry, line 0
    // for an IPv4 key (all its lookup and tracking read), both lines
    // otherwise, and the flow's counters with accounting. No hit but the
    // bucket overflowed: the key may sit in the next bucket (linear
    // probing), so prefetch that one and look there after.
    unsigned spilled[kMaxBulk];
    unsigned n_spilled = 0;
    auto first_hit = [&](unsigned i, uint32_t b) {
      const Bucket& bk = buckets_[b];
      const uint32_t bits = slots_holding(bk, signature(h[i]));
      if (bits == 0) return false;
      const uint32_t ref = bk.ref[std::countr_zero(bits)];
      cand[i] = ref;
      const Entry* e = &entries_[ref >> 1];
      __builtin_prefetch(e);
      if (key(i).family != net::Family::kIpv4) {
        __builtin_prefetch(reinterpret_cast<const uint8_t*>(e) + 64);
      }
      if (accounting()) __builtin_prefetch(&counters_[ref >> 1]);
      return true;
    };
    for (unsigned i = 0; i < m; ++i) {
      const uint32_t b = static_cast<uint32_t>(h[i]) & mask_;
      cand[i] = kNoRef;
      if (!first_hit(i, b) && buckets_[b].overflow != 0) {
        __builtin_prefetch(&buckets_[(b + 1) & mask_]);
        spilled[n_spilled++] = i;
      }
    }
    for (unsigned k = 0; k < n_spilled; ++k) {
      const unsigned i = spilled[k];
      first_hit(i, (static_cast<uint32_t>(h[i]) + 1) & mask_);
    }
    for (unsigned i = 0; i < m; ++i) {
      uint32_t ref = cand[i];
      if (ref == kNoRef || !key_matches(ref, key(i))) ref = find_ref(key(i), h[i]);
      out[i] = nullptr;
      if (ref == kNoRef) continue;
      Entry& e = entries_[ref >> 1];
      if (expired(e, now_c)) continue;
      e.epoch = epoch_;
      out[i] = &e;
      dir[i] = static_cast<Direction>(ref & 1);
    }
    keys = &key(m);
    out += m;
    dir += m;
    n -= m;
  }
}

void Table::prefetch(const net::FiveTuple& t) const {
  __builtin_prefetch(&buckets_[static_cast<uint32_t>(hash(t)) & mask_]);
}

bool Table::in_use(const net::FiveTuple& t, uint64_t now) const {
  const uint32_t ref = find_ref(t, hash(t));
  return ref != kNoRef && !expired(entries_[ref >> 1], coarse(now));
}

void Table::set_reply(Entry& e, const net::FiveTuple& reply) {
  e.reply_src = reply.src;
  e.reply_dst = reply.dst;
  e.reply_sport = reply.src_port;
  e.reply_dport = reply.dst_port;
  if (reply.family == net::Family::kIpv4) {
    e.reply_src4 = reply.src.v4();
    e.reply_dst4 = reply.dst.v4();
  }
}

Entry* Table::insert(const net::FiveTuple& orig, const net::FiveTuple& reply, const L4Info& first,
                     uint64_t now, InsertStatus* status) {
  if (!may_start_flow(orig, first, timeouts_)) {
    stats_.invalid.add();
    if (status) *status = InsertStatus::kInvalid;
    return nullptr;
  }
  const uint32_t now_c = coarse(now);
  const uint64_t h_orig = hash(orig);
  const uint64_t h_reply = hash(reply);
  if (!reclaim_if_stale(orig, h_orig, now_c) || !reclaim_if_stale(reply, h_reply, now_c)) {
    stats_.clashed.add();
    if (status) *status = InsertStatus::kClash;
    return nullptr;
  }
  const uint32_t idx = take_free(h_orig, now_c, status);
  if (idx == kNoRef) return nullptr;

  Entry& e = entries_[idx];
  e = Entry{};
  e.orig = orig;
  set_reply(e, reply);
  if (accounting()) counters_[idx] = Counters{};
  e.kind = EntryKind::kFlow;
  e.owner = owner_;
  e.epoch = epoch_;
  e.status = status::kConfirmed | nat_status(orig, reply);
  e.deadline = now_c;
  if (orig.proto == 17) e.aux = now_c + ticks_.udp_stream_after;
  if (orig.proto == 1) e.aux = first.icmp_type;
  if (orig.proto == 6) e.tcp_last = static_cast<uint8_t>(TcpFlagClass::kNone);  // tcp_new()
  link(idx * 2, h_orig);
  link(idx * 2 + 1, h_reply);
  stats_.inserted.add();

  if (track(e, Direction::kOriginal, first, now) == TrackResult::kInvalid) {
    unlink_entry(idx);
    release(idx);
    if (status) *status = InsertStatus::kInvalid;
    return nullptr;
  }
  if (status) *status = InsertStatus::kOk;
  return &e;
}

Entry* Table::insert_redirect(const net::FiveTuple& reply, uint8_t owner, uint16_t flow_status,
                              uint64_t now, uint32_t timeout_s, InsertStatus* status) {
  const uint32_t now_c = coarse(now);
  const uint64_t h = hash(reply);
  const uint32_t ref = find_ref(reply, h);
  if (ref != kNoRef && entries_[ref >> 1].kind == EntryKind::kRedirect) {
    Entry& e = entries_[ref >> 1];
    e.owner = owner;
    e.status = flow_status;
    refresh(e, now_c, seconds_to_ticks(timeout_s));
    if (status) *status = InsertStatus::kOk;
    return &e;
  }
  if (!reclaim_if_stale(ref, now_c)) {
    stats_.clashed.add();
    if (status) *status = InsertStatus::kClash;
    return nullptr;
  }
  const uint32_t idx = take_free(h, now_c, status);
  if (idx == kNoRef) return nullptr;
  Entry& e = entries_[idx];
  e = Entry{};
  // Only the reply tuple is known; the original keeps what the compact
  // reply shares with it (protocol, family).
  e.orig.proto = reply.proto;
  e.orig.family = reply.family;
  set_reply(e, reply);
  e.kind = EntryKind::kRedirect;
  e.owner = owner;
  e.epoch = epoch_;
  e.status = flow_status;
  refresh(e, now_c, seconds_to_ticks(timeout_s));
  link(idx * 2 + 1, h);
  stats_.inserted.add();
  if (status) *status = InsertStatus::kOk;
  return &e;
}

Entry* Table::find_related(const net::FiveTuple& quoted, uint64_t now, Direction* dir) {
  return lookup(invert(quoted), now, dir);
}

void Table::set_timeout(Entry& e, uint64_t now, uint32_t seconds) {
  refresh(e, coarse(now), seconds_to_ticks(seconds));
}

void Table::kill(Entry& e) {
  if (!live_kind(e.kind)) return;
  const auto idx = static_cast<uint32_t>(&e - entries_.get());
  unlink_entry(idx);
  e.status |= status::kDying;
  if (graveyard_.size() < kGraveyardSize) {
    e.kind = EntryKind::kDead;
    graveyard_.push_back(idx);
  } else {
    e.kind = EntryKind::kDeadSwept;
  }
  stats_.killed.add();
}

void Table::remove(Entry& e) {
  if (!live_kind(e.kind)) return;
  const auto idx = static_cast<uint32_t>(&e - entries_.get());
  unlink_entry(idx);
  release(idx);
}

bool FlowFilter::matches(const Entry& e) const {
  if (proto != 0 && e.orig.proto != proto) return false;
  if (reply_src && e.reply_src != *reply_src) return false;
  if (reply_dst && e.reply_dst != *reply_dst) return false;
  if (e.kind == EntryKind::kRedirect) {
    // A stub knows only its reply tuple.
    return redirects && !orig_src && !orig_dst && !orig_sport && !orig_dport && !dst_nat &&
           !src_nat && !mark;
  }
  if (orig_src && e.orig.src != *orig_src) return false;
  if (orig_dst && e.orig.dst != *orig_dst) return false;
  if (orig_sport && e.orig.src_port != *orig_sport) return false;
  if (orig_dport && e.orig.dst_port != *orig_dport) return false;
  if (dst_nat && (!(e.status & status::kDstNat) || e.reply_src != *dst_nat)) return false;
  if (src_nat && (!(e.status & status::kSrcNat) || e.reply_dst != *src_nat)) return false;
  if (mark && (e.mark & mark_mask) != (*mark & mark_mask)) return false;
  return true;
}

WalkProgress Table::delete_matching(const FlowFilter& filter, uint32_t cursor, uint32_t max_visit,
                                    uint64_t now) {
  const uint32_t now_c = coarse(now);
  WalkProgress p;
  uint32_t i = cursor;
  for (uint32_t n = 0; i < high_water_ && n < max_visit; ++i, ++n) {
    const Entry& e = entries_[i];
    if (live_kind(e.kind) && !expired(e, now_c) && filter.matches(e)) {
      unlink_entry(i);
      release(i);
      ++p.matched;
    }
  }
  p.next_cursor = i;
  p.done = i >= high_water_;
  return p;
}

void Table::flush() {
  for (uint32_t i = 0; i < capacity_; ++i) entries_[i] = Entry{};
  for (uint32_t b = 0; b <= mask_; ++b) buckets_[b] = Bucket{};
  free_.clear();
  for (uint32_t i = capacity_; i > 0; --i) free_.push_back(i - 1);
  graveyard_.clear();
  departed_.clear();
  size_ = 0;
  sweep_cursor_ = 0;
  high_water_ = 0;
}

unsigned Table::sweep_due(uint64_t now) {
  const uint64_t period = hz_ * kSweepPeriodSeconds;
  if (sweep_clock_ == 0 || now < sweep_clock_ || period == 0 || high_water_ == 0) {
    sweep_clock_ = now;  // the first call (or a clock that went back) starts the pace
    return 0;
  }
  // A worker that polled rarely owes at most one period's worth.
  if (now - sweep_clock_ > period) sweep_clock_ = now - period;
  const uint64_t due = static_cast<uint64_t>(high_water_) * (now - sweep_clock_) / period;
  const unsigned visit = static_cast<unsigned>(std::min<uint64_t>(due, kMaxSweepPerCall));
  sweep_clock_ += static_cast<uint64_t>(visit) * period / high_water_;
  return visit;
}

uint32_t Table::seconds_left(const Entry& e, uint64_t now) const {
  const uint32_t now_c = coarse(now);
  if (expired(e, now_c)) return 0;
  const uint64_t units = static_cast<uint64_t>(e.deadline - now_c) << shift_;
  return static_cast<uint32_t>(units / hz_);
}

FlowInfo Table::info(const Entry& e, uint64_t now) const {
  FlowInfo f;
  f.orig = e.orig;
  f.reply = e.reply();
  f.kind = e.kind;
  f.tcp_state = e.tcp_state();
  f.status = e.status;
  f.mark = e.mark;
  f.seconds_left = seconds_left(e, now);
  f.owner = e.owner;
  f.icmp_type = e.orig.proto == 1 ? static_cast<uint8_t>(e.aux) : 0;
  if (accounting()) {
    const Counters& c = counters_[index_of(e)];
    f.accounted = true;
    for (unsigned d = 0; d < 2; ++d) {
      f.packets[d] = c.packets[d];
      f.bytes[d] = c.bytes[d];
    }
  }
  return f;
}

}  // namespace dpgate::conntrack
