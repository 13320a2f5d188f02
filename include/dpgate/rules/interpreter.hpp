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

// The order a table's chains are laid out in memory (chain indices into
// tb.chains): the built-in chains as stored, then the user chains in the
// order a depth-first walk from them meets them (each rule's jump or goto
// followed in rule order), then the chains nothing reaches, as stored. A
// kube-proxy service's KUBE-SVC chain lands next to its KUBE-SEP chains,
// which iptables-save lists in hash order thousands of chains apart: a new
// connection then reads a few neighbouring lines of rules, matches and
// counters instead of one page each.
std::vector<uint32_t> chain_layout(const Table& table);

// Global rule ids: tables in order (raw, mangle, nat, filter), each table's
// chains in chain_layout() order, rules in chain order. The compiled Program
// stores rule id i at position i, and the per-worker counters are indexed by
// it, so the layout is theirs too.
struct RuleIds {
  // base[table][chain index] = id of the chain's first rule
  std::array<std::vector<uint32_t>, kTableCount> base;
  std::array<std::vector<uint32_t>, kTableCount> layout;  // chain_layout() of each table
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
