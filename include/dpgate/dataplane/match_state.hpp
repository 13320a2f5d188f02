// The state behind stateful matches for one worker: its random source
// (statistic --mode random), the shared nth counters and limit buckets of
// the running generation, the shared xt_recent lists, and payload search for
// -m string. One per worker, used only by that worker; what it shares with
// other workers is atomic (see PublishedRules and lb::RecentTable).
#pragma once

#include <cstdint>

#include "dpgate/dataplane/published_rules.hpp"
#include "dpgate/lb/recent.hpp"
#include "dpgate/match/payload.hpp"
#include "dpgate/rules/packet.hpp"

namespace dpgate::dataplane {

class WorkerMatchState final : public rules::MatchState {
 public:
  // For worker `worker` (its row of the rule counters).
  WorkerMatchState(uint32_t worker, lb::RecentTable* recent, uint64_t seed)
      : worker_(worker), recent_(recent), rng_(seed | 1) {}

  // Before evaluating a burst: the generation it runs and the time. The
  // first burst of a generation claims that generation's payload scanner.
  void begin(const PublishedRules* rules, uint64_t now_ns) {
    if (rules != rules_ || (rules != nullptr && rules->generation != generation_)) {
      scanner_ = rules != nullptr ? rules->claim_scanner() : nullptr;
      generation_ = rules != nullptr ? rules->generation : 0;
    }
    rules_ = rules;
    now_ns_ = now_ns;
    if (scanner_ != nullptr) scanner_->begin_packet();
  }

  // Before evaluating one hook of one packet: string matches scan the
  // payload once from here on and share the result. Without this call a
  // string match asked on its own (string()) searches on its own, and
  // string_scan() scans afresh (the bytes may change between hooks).
  void begin_packet() {
    packet_scoped_ = true;
    if (scanner_ != nullptr) scanner_->begin_packet();
  }

  uint32_t random31() override;
  bool nth(uint32_t rule_id, uint32_t match_index, const rules::StatisticMatch& m) override;
  bool recent(const rules::RecentCheck& m, const rules::Packet& p) override;
  bool limit(uint32_t rule_id, uint32_t match_index, const rules::LimitMatch& m) override;
  // nfacct objects count what their rules count: dpgatectl reports them from
  // the rule counters, so nothing is done per packet.
  void nfacct(const rules::NfacctMatch&, const rules::Packet&) override {}
  bool string(const rules::StringMatch& m, const rules::Packet& p) override;
  // The claimed scanner's bitset when its database numbers patterns as
  // `patterns` does (the same generation's Program), else nullptr. Without
  // begin_packet() it scans on every call: the Program asks once per hook.
  const uint64_t* string_scan(const rules::StringPatterns& patterns,
                              const rules::Packet& p) override;
  // Counted in this worker's row of the generation begin() was given, as
  // the rules a HookResult lists are (PublishedRules::count).
  void unrecorded_match(uint32_t rule_id, const rules::Packet& p) override {
    if (rules_ != nullptr) rules_->count_rule(worker_, rule_id, p.length);
  }

 private:
  uint32_t worker_;
  lb::RecentTable* recent_;
  const PublishedRules* rules_ = nullptr;
  uint64_t generation_ = 0;
  match::PayloadScanner* scanner_ = nullptr;  // this worker's, of rules_'s generation
  bool packet_scoped_ = false;                // begin_packet() is called per hook
  uint64_t now_ns_ = 0;
  uint64_t rng_;
};

}  // namespace dpgate::dataplane
