// The compiled form of a Ruleset that workers run: flat arrays of rules,
// chains and segments. Runs of exact-match rules become one hash lookup,
// other long runs a bit-vector classifier over (src, dst, proto, sport,
// dport); rules keep their order wherever order can change the result.
// Inside a classifier run, a rule that a non-negated -m string match can
// rule out before any match with side effects is dropped from the
// candidates when one scan of the payload did not find its pattern.
// Built by the control thread (compile_ruleset); immutable afterwards, so
// any number of workers may call evaluate() concurrently, each with its own
// MatchState.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "dpgate/rules/packet.hpp"
#include "dpgate/rules/ruleset.hpp"

namespace dpgate::rules {

struct CompileOptions {
  uint32_t min_hash_run = 4;         // shorter exact-match runs stay linear
  uint32_t min_classifier_run = 8;   // shorter general runs stay linear
  uint32_t max_classifier_rules = 1024;  // a longer run is split; Program::kMaxClassifierRules at most
  bool enable_hash = true;
  bool enable_classifier = true;
};

class Program {
 public:
  // One hook, every table in priority order; same result as Interpreter.
  // Any thread; no allocation, no locks.
  HookResult evaluate(Hook hook, const Packet& packet, MatchState& state) const;
  // The same in place, for the data plane: `packet` is rewritten as targets
  // run (DNAT, MARK), `res` overwritten; nothing is copied.
  void evaluate(Hook hook, Packet& packet, MatchState& state, HookResult& res) const;
  // A burst in place: the same as evaluate(hook, packets[k], state,
  // results[k]) for k = 0, 1, ... in that order, with each packet's first
  // far reads (prefetch_slots, prefetch_targets) fetched while the packets
  // before it are evaluated, so that a burst's misses overlap.
  // Any thread; no allocation, no locks.
  void evaluate_burst(Hook hook, Packet* packets, HookResult* results, uint32_t count, MatchState& state) const;

  // What evaluating `hook` for a packet first reads from far memory,
  // fetched ahead so that the misses of a burst's packets overlap: stage 1
  // the hash slots the packet's key selects in the hash segments the hook's
  // walk reaches first (kube-proxy's KUBE-SERVICES and KUBE-NODEPORTS),
  // stage 2, once those have arrived, the first lines of the rule or chain
  // the slot leads to. They change nothing. Any thread; no allocation.
  struct LookaheadKey {
    uint32_t dst = 0;
    uint16_t dport = 0;
    uint8_t proto = 0;
    bool with_nat = false;  // the packet walks nat (walks_nat)
  };
  static LookaheadKey lookahead_key(const Packet& p) {
    return {p.dst, p.dport, p.proto, walks_nat(p.ct_state, p.ct_confirmed)};
  }
  void prefetch_slots(Hook hook, const LookaheadKey& k) const;
  void prefetch_targets(Hook hook, const LookaheadKey& k) const;
  void prefetch_jumps(Hook hook, const LookaheadKey& k) const;
  static constexpr uint32_t kLookahead = 2;  // hash segments per hook
  // Runs visit(i) for i = 0 .. count - 1 in order, stage 1 of item i + 8,
  // stage 2 of item i + 4 and stage 3 of item i + 2 issued before it: each
  // prefetch has a few items' work to arrive in. key(i, k) fills item i's
  // key, false when item i evaluates nothing.
  template <class KeyFn, class VisitFn>
  void with_lookahead(Hook hook, uint32_t count, KeyFn&& key, VisitFn&& visit) const {
    constexpr uint32_t kSlotsAhead = 8, kTargetsAhead = 4, kJumpsAhead = 2;
    if (lookahead_[size_t(hook)][0].segment == kNone) {
      for (uint32_t i = 0; i < count; ++i) visit(i);
      return;
    }
    LookaheadKey k;
    for (uint32_t i = 0; i < count && i < kSlotsAhead; ++i) {
      if (key(i, k)) prefetch_slots(hook, k);
    }
    for (uint32_t i = 0; i < count && i < kTargetsAhead; ++i) {
      if (key(i, k)) prefetch_targets(hook, k);
    }
    for (uint32_t i = 0; i < count && i < kJumpsAhead; ++i) {
      if (key(i, k)) prefetch_jumps(hook, k);
    }
    for (uint32_t i = 0; i < count; ++i) {
      if (i + kSlotsAhead < count && key(i + kSlotsAhead, k)) prefetch_slots(hook, k);
      if (i + kTargetsAhead < count && key(i + kTargetsAhead, k)) prefetch_targets(hook, k);
      if (i + kJumpsAhead < count && key(i + kJumpsAhead, k)) prefetch_jumps(hook, k);
      visit(i);
    }
  }

  struct Stats {
    uint32_t rules = 0, chains = 0;
    uint32_t hash_segments = 0, hashed_rules = 0;
    uint32_t hash_max_probes = 0;  // slots the longest lookup of a hashed rule's key reads
    uint32_t classifier_segments = 0, classified_rules = 0;
    uint32_t linear_rules = 0;
    uint32_t string_guarded_rules = 0;  // classified rules a scan can rule out
    uint32_t string_guarded_segments = 0;  // classifier segments of guarded rules only
    uint32_t header_only_matches = 0;  // option-less -m tcp / -m udp, tested as the header's "! -f"
  };
  const Stats& stats() const { return stats_; }

  // False when evaluating `hook` can change nothing: every table the hook
  // walks (nat only when `with_nat`: the first packet of a tracked connection) is absent or
  // has an empty built-in chain with an ACCEPT policy there. evaluate() would
  // then accept with no rule matched and the marks untouched, so the data
  // plane skips it (kube-proxy's rules leave raw and mangle empty, and nat
  // is walked once per connection: an established packet has one hook to
  // evaluate, FORWARD, instead of three).
  bool hook_has_work(Hook hook, bool with_nat) const {
    for (int t = 0; t < kTableCount; ++t) {
      if (TableId(t) == TableId::kNat && !with_nat) continue;
      const uint32_t c = base_[size_t(t)][size_t(hook)];
      if (c != kNone && (chains_[c].rule_begin != chains_[c].rule_end || chains_[c].policy == Policy::kDrop)) {
        return true;
      }
    }
    return false;
  }
  // The payload patterns of its string matches, numbered as
  // match::PayloadDatabase numbers those of the same Ruleset.
  const StringPatterns& string_patterns() const { return strings_; }

  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr uint32_t kMaxDepth = 64;  // nested jumps per table traversal
  // Rules in one classifier run: bounds the stack bitset of string pruning.
  static constexpr uint32_t kMaxClassifierRules = 4096;

  // ---- flat representation (read by evaluate) ----
  //
  // What one packet touches is kept small and together, so that a ruleset
  // of 10 000 services costs about what one of 10 does: a rule is one cache
  // line (header fields, its segment, its target inline), the rules of a
  // chain are consecutive, their matches are 32-byte records consecutive in
  // the same order (comments, which cannot fail, are left out), and a jump
  // carries where its chain's rules and matches lie so that they are
  // fetched together. Everything rare (interface names, conntrack,
  // string matches, LOG and CONNMARK targets) is a cold index into the full
  // forms. The large arrays sit in 2 MiB-aligned memory advised for huge
  // pages (TLB reach; harmless where transparent huge pages are off).
  enum class SegmentKind : uint8_t { kLinear, kHash, kClassifier };
  struct Segment {
    SegmentKind kind = SegmentKind::kLinear;
    uint32_t begin = 0, end = 0;  // rule indices
    uint32_t index = 0;           // into hashes_ / classifiers_
  };
  static constexpr uint16_t kHInvSrc = 1, kHInvDst = 2, kHIn = 4, kHInPrefix = 8, kHInvIn = 16,
                            kHOut = 32, kHOutPrefix = 64, kHInvOut = 128, kHInvProto = 256,
                            kHFrag = 512, kHInvFrag = 1024;
  // -i / -o of the rules that test them (cold).
  struct Ifaces {
    char in[kIfNameSize] = {}, out[kIfNameSize] = {};
    uint8_t in_len = 0, out_len = 0;
  };
  enum class TargetKind : uint8_t {
    kContinue,  // no target: count and go on
    kAccept,
    kDrop,
    kReturn,
    kJump,
    kGoto,
    kReject,
    kNat,
    kMark,
    kCold,  // targets_[data.cold] (LOG, CONNMARK, NOTRACK)
  };
  // Where a jump's chain lies, so that its lines can be fetched at once.
  struct JumpData {
    uint32_t chain = 0;
    uint32_t rule_begin = 0, rule_end = 0;
    uint32_t match_begin = 0, match_end = 0;
    uint32_t cold_begin = kNone;  // its rules' first cold match (conntrack, string, ...), kNone if none
  };
  union TargetData {
    TargetData() : cold(0) {}
    JumpData jump;
    NatTarget nat;
    MarkTarget mark;
    RejectTarget reject;
    uint32_t cold;
  };
  struct CompiledTarget {
    TargetKind kind = TargetKind::kContinue;
    TargetData data;
  };
  // ip_packet_match's fields and the rest of a rule, one cache line.
  struct alignas(64) CompiledRule {
    uint32_t src = 0, src_mask = 0, dst = 0, dst_mask = 0;
    uint16_t flags = 0;  // kH* bits
    uint8_t proto = 0;
    uint32_t match_begin = 0;  // into matches_
    uint16_t match_count = 0;
    uint32_t segment = kNone;  // kNone: tried on its own (a linear rule)
    uint32_t iface = kNone;    // into ifaces_ when kHIn / kHOut
    CompiledTarget target;
  };
  // kCtState: a conntrack match of --ctstate (or -m state) alone, the first
  // rule of most stateful firewalls: one test of the packet's state bits.
  enum class MatchKind : uint8_t { kTcp, kStatistic, kMark, kRecent, kCtState, kCold };
  union MatchData {
    MatchData() : tcp() {}
    TcpMatch tcp;
    StatisticMatch statistic;
    MarkMatch mark;
    RecentCheck recent;
    uint16_t ct_states;  // kCtState: the ct_state bits that match (inv: '!')
  };
  // A match inline, or a cold index into cold_matches_.
  struct CompiledMatch {
    MatchKind kind = MatchKind::kCold;
    bool inv = false;    // kRecent, kCtState: '!'
    uint16_t index = 0;  // position in the source rule (identifies its state)
    uint32_t cold = 0;
    MatchData data;
  };
  struct ColdMatch {
    Match match;
    uint32_t index = 0;        // position in the source rule
    uint32_t pattern = kNone;  // a StringMatch's pattern id in strings_
  };
  struct CompiledChain {
    uint32_t rule_begin = 0, rule_end = 0;
    uint32_t match_begin = 0, match_end = 0;  // its rules' matches_
    uint32_t cold_begin = 0, cold_end = 0;    // and cold_matches_
    Policy policy = Policy::kNone;
  };
  // Open addressing, key and value inline. A rule that jumps (kube-proxy's
  // -j KUBE-SVC-...) has its chain here too: a hit goes on to the chain
  // without reading the rule's line.
  struct HashSlot {
    uint64_t key = 0;
    uint32_t rule = kNone;
    uint32_t chain = kNone;  // kNone: read the rule's target
    uint32_t rule_begin = 0, rule_end = 0, match_begin = 0, cold_begin = kNone;
  };
  struct HashIndex {
    bool with_dst = true;  // key = (dst, proto, dport) or (proto, dport)
    uint8_t shift = 0;     // 64 - log2(slots): a key's home slot is the product's top bits
    uint32_t slot_begin = 0;
    uint32_t mask = 0;  // slots - 1 (power of two)
  };
  static constexpr int kFields = 5;  // src, dst, proto, sport, dport
  struct ClassField {
    uint32_t bound_begin = 0, bound_count = 0;  // into bounds_
    uint32_t row_begin = 0;                     // into rows_, bound_count * words
  };
  struct Classifier {
    std::array<ClassField, kFields> fields;
    uint32_t words = 0;
    // Rules whose first string match can rule them out (see guard_pattern in
    // program.cpp): `words` bits in rows_ at guarded_row, kNone when none;
    // their patterns' ids lie in [pattern_lo, pattern_hi].
    uint32_t guarded_row = kNone;
    uint32_t pattern_lo = 0, pattern_hi = 0;
    // Every rule is guarded: a scan that found none of [pattern_lo,
    // pattern_hi] rules the whole segment out.
    bool all_guarded = false;
  };

  // Memory for the large arrays: 2 MiB-aligned and advised for transparent
  // huge pages once it is that large, ordinary below.
  template <class T>
  struct HugePageAllocator {
    using value_type = T;
    HugePageAllocator() = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(huge_allocate(n * sizeof(T), alignof(T))); }
    void deallocate(T* p, size_t n) { huge_deallocate(p, n * sizeof(T), alignof(T)); }
    template <class U>
    bool operator==(const HugePageAllocator<U>&) const { return true; }
  };
  template <class T>
  using HugeVector = std::vector<T, HugePageAllocator<T>>;
  static void* huge_allocate(size_t bytes, size_t align);
  static void huge_deallocate(void* p, size_t bytes, size_t align);

 private:
  friend Expected<Program> compile_ruleset(const Ruleset&, const CompileOptions&);
  // One hook's scan of the payload for every pattern, made when the walk
  // first needs it.
  struct PayloadScan {
    const uint64_t* found = nullptr;  // bit per pattern id; nullptr: ask per match
    bool asked = false;
  };
  const uint64_t* scanned(PayloadScan& scan, const Packet& p, MatchState& st) const;
  // One table's traversal for one packet (ipt_do_table), from the table's
  // built-in chain `base`: its verdict, kAccept when the packet goes on to
  // the hook's next table. Its position (chain, rule, jump stack) lives in
  // locals, mostly registers.
  Action walk_table(uint32_t base, Packet& p, HookResult& res, MatchState& st, PayloadScan& scan) const;
  const HashSlot* find_slot(const HashIndex& hi, uint64_t key) const;
  // Calls fn(hash index, key) for each hash segment `hook` looks ahead to
  // that packet `k` walks (nat only when k.with_nat): the three prefetch stages.
  template <class Fn>
  void for_each_lookahead(Hook hook, const LookaheadKey& k, Fn&& fn) const;
  uint32_t find_in_segment(const Segment& s, uint32_t from, const Packet& p, MatchState& st,
                           PayloadScan& scan) const;
  bool rule_matches(uint32_t r, const Packet& p, MatchState& st, PayloadScan& scan) const;
  [[gnu::noinline]] bool ifaces_match(const CompiledRule& r, const Packet& p) const;
  [[gnu::noinline]] bool cold_match(uint32_t r, const CompiledMatch& m, const Packet& p, MatchState& st,
                                    PayloadScan& scan) const;
  void prune_by_scan(const Segment& s, const Classifier& cl, const uint64_t* found, uint32_t w0,
                     uint64_t* cand) const;
  bool patterns_found(const Classifier& cl, const Packet& p, MatchState& st, PayloadScan& scan) const;

  HugeVector<CompiledRule> rules_;
  HugeVector<CompiledMatch> matches_;
  std::vector<ColdMatch> cold_matches_;
  std::vector<Target> targets_;  // cold targets
  std::vector<Ifaces> ifaces_;
  std::vector<CompiledChain> chains_;
  std::vector<Segment> segments_;
  std::vector<HashIndex> hashes_;
  HugeVector<HashSlot> slots_;
  std::vector<Classifier> classifiers_;
  std::vector<uint32_t> bounds_;  // per classifier field: its sorted bounds, then bound_search::kWindow of slack
  std::vector<uint64_t> rows_;
  StringPatterns strings_;
  // Classified rules guarded by each pattern, ascending: pattern id k owns
  // guarded_rules_[guard_begin_[k], guard_begin_[k + 1]).
  std::vector<uint32_t> guard_begin_;
  std::vector<uint32_t> guarded_rules_;
  // base_[table][hook]: chain index of the built-in chain, kNone when absent.
  std::array<std::array<uint32_t, kHookCount>, kTableCount> base_{};
  // tables_of_[hook]: the tables with a built-in chain there, in the hook's
  // order (hook_tables()), and those chains: what evaluate() walks.
  struct HookTables {
    uint8_t count = 0;
    std::array<TableId, kTableCount> table{};
    std::array<uint32_t, kTableCount> base{};
  };
  std::array<HookTables, kHookCount> tables_of_{};
  // lookahead_[hook]: the hash segments its walk reaches first, with their
  // table (nat's are not fetched for a packet that skips nat); segment kNone
  // past the last.
  struct Lookahead {
    uint32_t segment = kNone;
    TableId table = TableId::kFilter;
  };
  std::array<std::array<Lookahead, kLookahead>, kHookCount> lookahead_{};
  Stats stats_;
};

Expected<Program> compile_ruleset(const Ruleset& ruleset, const CompileOptions& options = {});

}  // namespace dpgate::rules
