// The per-worker conntrack table (DESIGN §3): every flow a worker owns, found
// by either of its tuples, plus redirect stubs for replies owned elsewhere.
// One Table per worker; only that worker calls it (single writer, no locks,
// no allocation after construction). Other threads get FlowInfo copies that
// the worker hands out through its message ring.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "dpgate/conntrack/entry.hpp"
#include "dpgate/conntrack/signatures.hpp"
#include "dpgate/conntrack/timeouts.hpp"
#include "dpgate/conntrack/track.hpp"
#include "dpgate/net/addr.hpp"
#include "dpgate/util/huge_array.hpp"

namespace dpgate::conntrack {

// A counter with one writer (the table's worker); the control thread reads
// it. add() is a relaxed load and store, no locked instruction.
struct StatCounter {
  std::atomic<uint64_t> value{0};
  void add(uint64_t n = 1) {
    value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return value.load(std::memory_order_relaxed); }
};

// Written by the table's worker, read by the control thread (relaxed).
struct TableStats {
  StatCounter inserted;       // flows and redirect stubs created
  StatCounter early_dropped;  // non-assured entries evicted to make room
  StatCounter refused;        // table full and nothing evictable: new flow dropped
  StatCounter clashed;        // a tuple already in use (netfilter's insert_failed)
  StatCounter expired;        // freed by expire() because their timeout passed
  StatCounter killed;         // RST before any reply, reopened TCP connections
  StatCounter invalid;        // packets track() found INVALID
  StatCounter departures_lost;  // departures of redirected flows past kMaxDepartures (stubs left stale)
};

struct TableConfig {
  uint32_t capacity = 65536;  // flows and stubs; memory is 128 B per entry plus the index
  // Per-flow packet and byte counters (nf_conntrack_acct): 32 B more per
  // entry and a cache line more per packet. Off by default, as the
  // kernel's; `conntrack -L` then prints no packets=/bytes=, as the
  // kernel's does.
  bool accounting = false;
  // The unit of every `now` argument: rte_get_tsc_hz() when `now` is
  // rte_rdtsc(), 1e9 for nanoseconds. Deadlines are kept in coarse ticks
  // of about 2-4 ms (a power-of-two number of these units), like jiffies.
  uint64_t ticks_per_second = 1'000'000'000;
  Timeouts timeouts;
  uint8_t owner = 0;                // this worker's index, stamped into its flows
  uint8_t early_drop_buckets = 8;   // NF_CT_EVICTION_RANGE
  uint64_t hash_seed = 0x5eed'c0ff'ee15'600dULL;  // the Runtime draws one per start
};

enum class InsertStatus : uint8_t {
  kOk,
  kFull,     // no free entry and nothing evictable: refused, counted
  kClash,    // the original or reply tuple belongs to a live entry
  kInvalid,  // the first packet may not start a flow (see may_start_flow)
};

// A copy of one entry for the control thread (`conntrack -L`, metrics).
struct FlowInfo {
  net::FiveTuple orig, reply;
  EntryKind kind = EntryKind::kFree;
  TcpState tcp_state = TcpState::kNone;
  uint16_t status = 0;
  uint32_t mark = 0;
  uint32_t seconds_left = 0;
  uint8_t owner = 0;
  uint8_t icmp_type = 0;  // ICMP flows: the original direction's type
  bool accounted = false;  // the table counts packets and bytes (the two below)
  uint64_t packets[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};
};

// What `conntrack -D` selects (kube-proxy: -p udp --orig-dst VIP,
// --dport NODEPORT, --dst-nat ENDPOINT). Unset fields match anything.
struct FlowFilter {
  uint8_t proto = 0;  // 0: any
  std::optional<net::IpAddr> orig_src, orig_dst, reply_src, reply_dst;
  std::optional<net::be16> orig_sport, orig_dport;
  std::optional<net::IpAddr> dst_nat;  // DNAT'd flows whose reply source (the backend) is this
  std::optional<net::IpAddr> src_nat;  // SNAT'd flows whose reply destination is this
  std::optional<uint32_t> mark;
  uint32_t mark_mask = 0xffffffff;
  bool redirects = false;  // also match redirect stubs (by their reply tuple only)

  bool matches(const Entry& e) const;
};

// Where a resumable walk over the table stands.
struct WalkProgress {
  uint32_t next_cursor = 0;  // pass back to continue
  uint32_t matched = 0;      // entries visited-and-matched (for_each) or deleted
  bool done = false;         // the walk reached the end of the table
};

class Table {
 public:
  static constexpr unsigned kMaxBulk = 64;

  // Allocates and touches all memory. Control thread, before the worker runs.
  explicit Table(const TableConfig& config);
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // --- The owning worker only, from here on. ---

  // Starts a burst: frees entries killed during the previous one, and opens
  // a new epoch. Entries looked up, tracked or inserted in the current epoch
  // are never evicted by early drop, so Entry pointers held for packets of
  // this burst stay valid until the next begin_burst(), expire(), remove(),
  // flush() or delete_matching().
  void begin_burst();

  // The live entry holding `key` as its original or reply tuple, and which
  // of the two it is; nullptr when none (entries past their timeout are
  // gone even before expire() reclaims them, as netfilter's lookups skip
  // expired conntracks).
  Entry* lookup(const net::FiveTuple& key, uint64_t now, Direction* dir);

  // lookup() for n keys at once (any n; done in groups of kMaxBulk): hashes
  // all, prefetches their buckets, then their candidate entries, then
  // resolves. out[i]/dir[i] as lookup() would return for key i, which lies
  // `stride` bytes after key i-1 (a field of the caller's per-packet
  // records, read in place rather than copied out).
  void lookup_bulk(const net::FiveTuple* keys, unsigned n, uint64_t now, Entry** out, Direction* dir,
                   size_t stride = sizeof(net::FiveTuple));

  // Whether a live entry holds `t` in either direction (NAT port choice).
  bool in_use(const net::FiveTuple& t, uint64_t now) const;

  // Fetches the index line a lookup of `t` reads first, so that a later
  // in_use() or insert() of it does not wait for memory. Changes nothing.
  void prefetch(const net::FiveTuple& t) const;

  // Creates the flow whose first packet has tuple `orig`; `reply` is the
  // tuple its replies will carry (invert(orig) unless NAT chose otherwise;
  // SRC_NAT/DST_NAT are set from the difference). Tracks `first` as the
  // kernel does for a new conntrack, then confirms it. When the table is
  // full, evicts the non-assured entries of the first of up to
  // early_drop_buckets buckets, from the new flow's on, that has any, and
  // reclaims the expired ones there (netfilter's early_drop); if there are none,
  // refuses. Returns nullptr unless *status == kOk.
  Entry* insert(const net::FiveTuple& orig, const net::FiveTuple& reply, const L4Info& first,
                uint64_t now, InsertStatus* status = nullptr);

  // Creates a redirect stub: packets with tuple `reply` belong to worker
  // `owner`. `flow_status` is the owner's status bits (ASSURED stubs are
  // not early-dropped). Expires after `timeout_s` unless refreshed. A stub
  // already there for the tuple takes the new owner: the newest flow with
  // that reply tuple is the one alive (the older one's owner sends its
  // removal after it, or already has). A flow of this table holding the
  // tuple is a clash.
  Entry* insert_redirect(const net::FiveTuple& reply, uint8_t owner, uint16_t flow_status,
                         uint64_t now, uint32_t timeout_s, InsertStatus* status = nullptr);

  // Tracks one packet of a looked-up flow (not a stub): the protocol state
  // machine, timeout refresh, SEEN_REPLY / ASSURED, counters (with
  // accounting). On kReopen the entry has been killed; on a RST before any
  // reply the packet is accepted and the entry killed, as netfilter does
  // (e.kind is then no longer kFlow: the packet may still use it until the
  // next begin_burst).
  // Inline for the packet a busy table tracks most, a TCP segment with ACK
  // (PSH allowed) of an ESTABLISHED connection; the rest out of line.
  TrackResult track(Entry& e, Direction dir, const L4Info& p, uint64_t now);
  // The whole tracker, which track() shortcuts for that one case (public
  // so that a test can hold the two side by side).
  TrackResult track_any(Entry& e, Direction dir, const L4Info& p, uint64_t now);
  // track()'s two halves, for a caller that reads a segment's sequence
  // numbers only when they are needed: whether it takes the inline case
  // (a TCP ACK of an ESTABLISHED flow), and that case, which needs no more
  // of the packet than its flags and IP total length.
  bool tracks_inline(const Entry& e, uint8_t tcp_flags) const {
    return e.orig.proto == 6 && e.proto_state == static_cast<uint8_t>(TcpState::kEstablished) &&
           (tcp_flags & kTcpClassFlags) == kTcpAck;
  }
  TrackResult track_inline(Entry& e, Direction dir, uint16_t ip_len, uint64_t now);

  // The flow an ICMP error is RELATED to, from the tuple of the packet it
  // quotes. The quoted packet travelled the opposite way of the error, so
  // the flow is looked up by the inverted quoted tuple (icmp_error_message),
  // and *dir is the error's own direction within that flow.
  Entry* find_related(const net::FiveTuple& quoted, uint64_t now, Direction* dir);

  // Sets a flow's or stub's timeout from now (e.g. a stub refreshed by its owner).
  void set_timeout(Entry& e, uint64_t now, uint32_t seconds);

  // Unlinks the entry at once (no lookup finds it) and frees its memory at
  // the next begin_burst(), so the current burst may still read it.
  void kill(Entry& e);

  // Frees the entry now. Between bursts only (a control message, tests).
  void remove(Entry& e);

  // The reply tuples of flows marked status::kRedirected that have left the
  // table since clear_departures() - expired, killed, early-dropped,
  // reclaimed, deleted; not flush(), which every worker does at once - so
  // that the owner can tell the workers keeping their stubs. The owner
  // announces them before any new stub, so that a removal never overtakes
  // the stub of a newer flow with the same reply tuple. At most
  // kMaxDepartures are kept between two clears; the rest are counted
  // (stats().departures_lost) and their stubs stay until they expire.
  static constexpr uint32_t kMaxDepartures = 4096;
  const std::vector<net::FiveTuple>& departures() const { return departed_; }
  void clear_departures() { departed_.clear(); }

  // Visits at most `max_visit` entries from the sweep cursor and frees those
  // whose timeout has passed, calling on_free(const Entry&) for each before
  // it is freed. Returns how many it freed. Between bursts. The sweep covers
  // the entries below the high-water mark (every index ever taken since the
  // table was made or flushed), not the whole capacity: free entries are
  // handed out lowest index first and reused last-freed first, so a table
  // sized for a million flows that holds a thousand is a thousand entries to
  // sweep, not a million cache lines a second.
  template <class OnFree>
  unsigned expire(uint64_t now, unsigned max_visit, OnFree&& on_free);
  unsigned expire(uint64_t now, unsigned max_visit) {
    return expire(now, max_visit, [](const Entry&) {});
  }

  // How many entries expire() should visit at `now` for the sweep to cover
  // the table (up to its high-water mark) once per kSweepPeriodSeconds,
  // whatever the call rate (at most kMaxSweepPerCall, the rest carried
  // over): an expired entry is freed within about a period (lookups skip it
  // at once). A fixed count per poll made a 1 M-entry table cost a cache
  // miss per packet at line rate.
  static constexpr uint64_t kSweepPeriodSeconds = 1;
  static constexpr unsigned kMaxSweepPerCall = 1024;
  static constexpr uint32_t kSweepPrefetch = 4;
  unsigned sweep_due(uint64_t now);

  // Calls fn(const Entry&) for live flows and stubs among at most
  // `max_visit` slots from `cursor` (0 to start), up to the high-water mark
  // (no flow lies above it). For `conntrack -L`: the worker copies info() of
  // each into a reply message.
  template <class Fn>
  WalkProgress for_each(uint32_t cursor, uint32_t max_visit, uint64_t now, Fn&& fn) const;

  // Deletes live entries matching `filter` among at most `max_visit` slots
  // from `cursor`. Between bursts.
  WalkProgress delete_matching(const FlowFilter& filter, uint32_t cursor, uint32_t max_visit,
                               uint64_t now);

  // Frees everything. Between bursts.
  void flush();

  FlowInfo info(const Entry& e, uint64_t now) const;
  uint32_t seconds_left(const Entry& e, uint64_t now) const;

  uint32_t size() const { return size_; }
  uint32_t capacity() const { return capacity_; }
  uint32_t bucket_count() const { return mask_ + 1; }
  const TableStats& stats() const { return stats_; }
  const Timeouts& timeouts() const { return timeouts_; }
  uint8_t owner() const { return owner_; }
  uint64_t hash_seed() const { return seed_; }
  bool accounting() const { return counters_.size() != 0; }
  // The flow's counters; accounting() must be on.
  const Counters& counters(const Entry& e) const { return counters_[index_of(e)]; }

 private:
  static constexpr unsigned kSlots = 7;
  static constexpr uint32_t kNoRef = 0xffffffff;
  static constexpr uint32_t kGraveyardSize = 4096;

  // One cache line of the index: 7 (signature, entry ref) pairs, and how
  // many refs that hashed here or earlier were pushed past this bucket.
  // ref = entry index * 2 + direction; signature 0 marks an empty slot.
  struct alignas(64) Bucket {
    uint32_t sig[kSlots];
    uint32_t overflow;
    uint32_t ref[kSlots];
    uint32_t pad;
  };
  static_assert(sizeof(Bucket) == 64);
  // Bit s set when slot s holds `sig` (a signature, never 0: the overflow
  // count in the eighth lane is masked off).
  static uint32_t slots_holding(const Bucket& bk, uint32_t sig) {
    static_assert(offsetof(Bucket, overflow) == kSlots * sizeof(uint32_t));
    return signatures::equal_lanes(bk.sig, sig) & ((1u << kSlots) - 1);
  }

  // Coarse timeouts, precomputed from Timeouts.
  struct Ticks {
    uint32_t tcp[kTcpStateCount];
    uint32_t tcp_unack, udp, udp_stream, udp_stream_after, icmp, generic;
  };

  uint64_t hash(const net::FiveTuple& t) const;
  static uint32_t signature(uint64_t h) {
    uint32_t s = static_cast<uint32_t>(h >> 32);
    return s == 0 ? 1 : s;
  }
  uint32_t coarse(uint64_t now) const { return static_cast<uint32_t>(now >> shift_); }
  uint32_t seconds_to_ticks(uint32_t seconds) const;
  static bool expired(const Entry& e, uint32_t now_c) {
    return static_cast<int32_t>(e.deadline - now_c) <= 0;
  }
  static bool live_kind(EntryKind k) { return k == EntryKind::kFlow || k == EntryKind::kRedirect; }
  bool key_matches(uint32_t ref, const net::FiveTuple& key) const;
  uint32_t find_ref(const net::FiveTuple& key, uint64_t h) const;
  static void set_reply(Entry& e, const net::FiveTuple& reply);
  void link(uint32_t ref, uint64_t h);
  void unlink(uint32_t ref, const net::FiveTuple& key);
  void unlink_entry(uint32_t idx);
  void release(uint32_t idx);
  bool evict_for(uint64_t h, uint32_t now_c);
  uint32_t take_free(uint64_t h, uint32_t now_c, InsertStatus* status);
  bool reclaim_if_stale(const net::FiveTuple& t, uint64_t h, uint32_t now_c);
  bool reclaim_if_stale(uint32_t ref, uint32_t now_c);  // `ref` from find_ref(), or kNoRef
  void refresh(Entry& e, uint32_t now_c, uint32_t ticks) { e.deadline = now_c + ticks; }
  uint32_t index_of(const Entry& e) const { return static_cast<uint32_t>(&e - entries_.get()); }
  void account(const Entry& e, Direction dir, uint16_t ip_len) {
    if (!accounting()) return;
    Counters& c = counters_[index_of(e)];
    ++c.packets[static_cast<unsigned>(dir)];
    c.bytes[static_cast<unsigned>(dir)] += ip_len;
  }
  void account(const Entry& e, Direction dir, const L4Info& p) { account(e, dir, p.ip_len); }
  TrackResult track_tcp(Entry& e, Direction dir, const L4Info& p, uint32_t now_c);
  TrackResult track_udp(Entry& e, Direction dir, uint32_t now_c);
  TrackResult track_icmp(Entry& e, Direction dir, const L4Info& p, uint32_t now_c);

  uint32_t capacity_;
  uint32_t mask_;
  uint32_t size_ = 0;
  uint32_t sweep_cursor_ = 0;
  uint32_t high_water_ = 0;  // entries_[high_water_..] have never been taken
  uint64_t sweep_clock_ = 0;  // the sweep has visited its due up to this time
  uint8_t epoch_ = 1;
  uint8_t owner_;
  uint8_t early_drop_buckets_;
  unsigned shift_;
  uint64_t hz_;
  uint64_t seed_;
  Timeouts timeouts_;
  Ticks ticks_;
  util::HugeArray<Entry> entries_;    // on huge pages where THP allows: a lookup of
  util::HugeArray<Bucket> buckets_;   // a random flow among millions misses no TLB
  util::HugeArray<Counters> counters_;  // one per entry with accounting, else none
  std::vector<uint32_t> free_;       // stack of free entry indexes
  std::vector<uint32_t> graveyard_;  // killed this burst, freed at begin_burst
  std::vector<net::FiveTuple> departed_;  // see departures()
  TableStats stats_;
};

// What track_any() does for this packet, step for step: the state table
// takes ESTABLISHED to ESTABLISHED on an ACK from either side, which is
// never ignored and has no special case; the timeout is ESTABLISHED's,
// capped at tcp_unack until the flow has seen a reply, and a flow that has
// is ASSURED; a reply marks the flow SEEN_REPLY afterwards.
inline TrackResult Table::track(Entry& e, Direction dir, const L4Info& p, uint64_t now) {
  if (!tracks_inline(e, p.tcp_flags)) [[unlikely]] return track_any(e, dir, p, now);
  return track_inline(e, dir, p.ip_len, now);
}

inline TrackResult Table::track_inline(Entry& e, Direction dir, uint16_t ip_len, uint64_t now) {
  e.epoch = epoch_;
  uint32_t timeout = ticks_.tcp[static_cast<unsigned>(TcpState::kEstablished)];
  if (!(e.status & status::kSeenReply)) {
    if (timeout > ticks_.tcp_unack) timeout = ticks_.tcp_unack;
  } else {
    e.status |= status::kAssured;
  }
  e.tcp_last = with_last(e.tcp_last, TcpFlagClass::kAck, dir);
  refresh(e, coarse(now), timeout);
  account(e, dir, ip_len);
  if (dir == Direction::kReply) e.status |= status::kSeenReply;
  return TrackResult::kAccept;
}

template <class OnFree>
unsigned Table::expire(uint64_t now, unsigned max_visit, OnFree&& on_free) {
  const uint32_t now_c = coarse(now);
  unsigned freed = 0;
  if (max_visit > high_water_) max_visit = high_water_;
  for (unsigned i = 0; i < max_visit; ++i) {
    const uint32_t idx = sweep_cursor_ < high_water_ ? sweep_cursor_ : 0;
    sweep_cursor_ = idx + 1;
    // A few entries ahead: between polls the burst's lookups evict the lines
    // the hardware prefetcher would have brought in.
    if (idx + kSweepPrefetch < high_water_) __builtin_prefetch(&entries_[idx + kSweepPrefetch]);
    Entry& e = entries_[idx];
    if (live_kind(e.kind) && expired(e, now_c)) {
      on_free(static_cast<const Entry&>(e));
      unlink_entry(idx);
      release(idx);
      stats_.expired.add();
      ++freed;
    } else if (e.kind == EntryKind::kDeadSwept) {
      // killed while the graveyard was full: the sweep owns it
      release(idx);
    }
  }
  return freed;
}

template <class Fn>
WalkProgress Table::for_each(uint32_t cursor, uint32_t max_visit, uint64_t now, Fn&& fn) const {
  const uint32_t now_c = coarse(now);
  WalkProgress p;
  uint32_t i = cursor;
  for (uint32_t n = 0; i < high_water_ && n < max_visit; ++i, ++n) {
    const Entry& e = entries_[i];
    if (live_kind(e.kind) && !expired(e, now_c)) {
      fn(e);
      ++p.matched;
    }
  }
  p.next_cursor = i;
  p.done = i >= high_water_;
  return p;
}

}  // namespace dpgate::conntrack
