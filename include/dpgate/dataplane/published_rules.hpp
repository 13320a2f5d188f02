// One generation of rules as workers see it: the compiled Program, the
// Ruleset it came from (for save and list), and per-worker rule counters.
// Built by the control thread, published by one atomic pointer store,
// reclaimed after every worker has passed a quiescent state (rte_rcu_qsbr).
// Workers read program/ruleset (immutable) and write only their own
// counters row (single writer each); the control thread sums the rows.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dpgate/dataplane/counter.hpp"
#include "dpgate/match/payload.hpp"
#include "dpgate/rules/program.hpp"
#include "dpgate/rules/ruleset.hpp"

namespace dpgate::dataplane {

struct RuleCounter {
  Counter packets;
  Counter bytes;
};

struct PublishedRules {
  // Stateful matches keep state per (rule, match position); positions past
  // this share the last slot (no rule in practice has that many).
  static constexpr uint32_t kStateSlotsPerRule = 4;

  uint64_t generation = 0;
  rules::Ruleset ruleset;
  rules::Program program;
  uint32_t rule_count = 0;
  // counters[worker][rule id]; sized at build time, never resized.
  std::vector<std::unique_ptr<RuleCounter[]>> counters;
  // statistic --mode nth counters and limit buckets, shared by all workers as
  // the kernel shares them (atomic compare-and-swap, only when a packet
  // reaches such a match). Indexed by state_slot().
  std::unique_ptr<std::atomic<uint32_t>[]> nth;
  std::unique_ptr<std::atomic<uint64_t>[]> limit_tat;  // GCRA: theoretical arrival time, ns
  // -m string: the generation's pattern database (immutable) and one scanner
  // (Hyperscan scratch, result bitset) per worker, allocated here so that no
  // worker allocates. A worker claims a scanner once per generation
  // (claim_scanner) and is then its only user.
  match::PayloadDatabase payload;
  std::vector<std::unique_ptr<match::PayloadScanner>> scanners;
  mutable std::atomic<uint32_t> scanners_claimed{0};
  // program.hook_has_work(hook, with_nat), asked once here: the worker asks
  // per packet and hook, and most of those hooks have nothing to do.
  std::array<std::array<bool, 2>, rules::kHookCount> hook_work{};
  uint32_t packet_fields = 0;  // ruleset.fields_read(): the costly rules::Packet fields a rule reads

  bool hook_has_work(rules::Hook hook, bool with_nat) const { return hook_work[size_t(hook)][with_nat ? 1 : 0]; }

  // Control thread.
  PublishedRules(uint64_t gen, rules::Ruleset rs, rules::Program prog, match::PayloadDatabase db, uint32_t rules,
                 uint32_t workers);

  // A scanner no other caller has; nullptr once all are taken (the caller
  // then searches without the database). Any thread; lock-free.
  match::PayloadScanner* claim_scanner() const {
    const uint32_t k = scanners_claimed.fetch_add(1, std::memory_order_relaxed);
    return k < scanners.size() ? scanners[k].get() : nullptr;
  }

  static uint32_t state_slot(uint32_t rule_id, uint32_t match_index) {
    return rule_id * kStateSlotsPerRule + std::min(match_index, kStateSlotsPerRule - 1);
  }

  // Adds one packet to the rules it matched. The worker `w` only.
  // (Those past the list's kMaxMatched were counted by count_rule() as
  // they matched.)
  void count(uint32_t w, const rules::HookResult& r, uint32_t bytes) const {
    for (uint16_t i = 0; i < r.matched_count; ++i) count_rule(w, r.matched[i], bytes);
  }
  // Adds one packet to rule `rule_id`. The worker `w` only.
  void count_rule(uint32_t w, uint32_t rule_id, uint32_t bytes) const {
    RuleCounter& c = counters[w][rule_id];
    c.packets.add(1);
    c.bytes.add(bytes);
  }
};

}  // namespace dpgate::dataplane
