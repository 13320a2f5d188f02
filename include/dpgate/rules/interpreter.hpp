// The reference evaluator: walks a Ruleset rule by rule as netfilter's
// ipt_do_table does (first match, jump/goto/RETURN, policies, tables in
// hook priority order). The compiled Program must agree with it on every
// packet. Control thread, tests and `dpgatectl simulate` only.
#pragma once

#include <string>
#include <vector>

#include "dpgate/rules/packet.hpp"
#include "dpgate/rules/ruleset.hpp"

namespace dpgate::rules {

// Tables a hook runs, in netfilter priority order (raw -300, mangle -150,
// nat dst -100, filter 0, nat src 100).
const std::vector<TableId>& hook_tables(Hook hook);

// One step of a trace, like iptables -j TRACE: a rule was evaluated.
struct TraceStep {
  TableId table;
  std::string chain;
  uint32_t rule_number = 0;  // 1-based within the chain; 0 for the policy
  bool matched = false;
  std::string what;  // "rule", "return", "policy"
};

// Global rule ids: Ruleset order over tables (raw, mangle, nat, filter),
// chains as stored, rules in chain order.
struct RuleIds {
  // base[table][chain index] = id of the chain's first rule
  std::array<std::vector<uint32_t>, kTableCount> base;
  uint32_t count = 0;
};
RuleIds rule_ids(const Ruleset& ruleset);

class Interpreter {
 public:
  explicit Interpreter(const Ruleset& ruleset);

  // Runs every table of `hook` on the packet. `trace` (optional) gets each
  // rule visited.
  HookResult evaluate(Hook hook, const Packet& packet, MatchState& state,
                      std::vector<TraceStep>* trace = nullptr) const;

  const RuleIds& ids() const { return ids_; }

 private:
  const Ruleset& rs_;
  RuleIds ids_;
};

}  // namespace dpgate::rules
