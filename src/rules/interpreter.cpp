// Rule-by-rule reference evaluation (see interpreter.hpp).
#include "dpgate/rules/interpreter.hpp"

#include <utility>

#include "eval.hpp"

namespace dpgate::rules {

const std::vector<TableId>& hook_tables(Hook hook) {
  static const std::vector<TableId> pre{TableId::kRaw, TableId::kMangle, TableId::kNat};
  static const std::vector<TableId> input{TableId::kMangle, TableId::kFilter, TableId::kNat};
  static const std::vector<TableId> forward{TableId::kMangle, TableId::kFilter};
  static const std::vector<TableId> output{TableId::kRaw, TableId::kMangle, TableId::kNat,
                                           TableId::kFilter};
  static const std::vector<TableId> post{TableId::kMangle, TableId::kNat};
  switch (hook) {
    case Hook::kPrerouting: return pre;
    case Hook::kInput: return input;
    case Hook::kForward: return forward;
    case Hook::kOutput: return output;
    case Hook::kPostrouting: return post;
  }
  return forward;
}

std::vector<uint32_t> chain_layout(const Table& tb) {
  const auto n = uint32_t(tb.chains.size());
  const ChainIndex index(tb);
  std::vector<uint32_t> order;
  order.reserve(n);
  std::vector<bool> placed(n, false);
  for (uint32_t c = 0; c < n; ++c) {
    if (!tb.chains[c].builtin) continue;
    order.push_back(c);
    placed[c] = true;
  }
  // Depth first, iteratively: (chain, its next rule to look at).
  std::vector<std::pair<uint32_t, size_t>> stack;
  for (uint32_t b = 0; b < n; ++b) {
    if (!tb.chains[b].builtin) continue;
    stack.push_back({b, 0});
    while (!stack.empty()) {
      auto& [c, next] = stack.back();
      const auto& rules = tb.chains[c].rules;
      if (next == rules.size()) {
        stack.pop_back();
        continue;
      }
      const auto* j = std::get_if<JumpTarget>(&rules[next++].target);
      if (j == nullptr) continue;
      const uint32_t to = index.find(j->chain);
      if (to == n || placed[to]) continue;
      placed[to] = true;
      order.push_back(to);
      stack.push_back({to, 0});
    }
  }
  for (uint32_t c = 0; c < n; ++c) {
    if (!placed[c]) order.push_back(c);
  }
  return order;
}

RuleIds rule_ids(const Ruleset& rs) {
  RuleIds ids;
  for (int t = 0; t < kTableCount; ++t) {
    const Table& tb = rs.tables[size_t(t)];
    ids.base[size_t(t)].assign(tb.chains.size(), 0);
    ids.layout[size_t(t)] = chain_layout(tb);
    for (const uint32_t c : ids.layout[size_t(t)]) {
      ids.base[size_t(t)][c] = ids.count;
      ids.count += uint32_t(tb.chains[c].rules.size());
    }
  }
  return ids;
}

Interpreter::Interpreter(const Ruleset& ruleset) : rs_(ruleset), ids_(rule_ids(ruleset)) {}

HookResult Interpreter::evaluate(Hook hook, const Packet& packet, MatchState& state,
                                 std::vector<TraceStep>* trace) const {
  return eval::run_hook(hook, packet, [&](TableId t, Packet& p, HookResult& res) {
    const Table& tb = rs_.table(t);
    if (!tb.present) return eval::Flow::kAccept;
    const Chain* base = tb.find(hook_name(hook));
    if (base == nullptr) return eval::Flow::kAccept;
    auto index_of = [&](const Chain* c) { return size_t(c - tb.chains.data()); };
    struct Frame {
      const Chain* chain;
      size_t next;
    };
    std::vector<Frame> stack;
    const Chain* chain = base;
    size_t pos = 0;
    while (true) {
      if (pos >= chain->rules.size()) {
        // End of chain: implicit RETURN, or the policy of the built-in chain.
        if (stack.empty()) {
          if (trace) trace->push_back({t, chain->name, 0, true, "policy"});
          return chain->policy == Policy::kDrop ? eval::Flow::kDrop : eval::Flow::kAccept;
        }
        if (trace) trace->push_back({t, chain->name, 0, true, "return"});
        chain = stack.back().chain;
        pos = stack.back().next;
        stack.pop_back();
        continue;
      }
      const Rule& r = chain->rules[pos];
      const uint32_t id = ids_.base[size_t(t)][index_of(chain)] + uint32_t(pos);
      bool ok = eval::header_matches(r, p);
      for (uint32_t k = 0; ok && k < r.matches.size(); ++k) {
        ok = eval::match_one(r.matches[k], eval::MatchCtx{p, state, id, k});
      }
      if (trace) trace->push_back({t, chain->name, uint32_t(pos + 1), ok, "rule"});
      if (!ok) {
        ++pos;
        continue;
      }
      record_match(res, state, id, p);
      eval::Flow f = eval::apply_target(r.target, id, p, res);
      switch (f) {
        case eval::Flow::kContinue:
          ++pos;
          break;
        case eval::Flow::kJump:
        case eval::Flow::kGoto: {
          const Chain* to = tb.find(std::get<JumpTarget>(r.target).chain);
          if (f == eval::Flow::kJump) stack.push_back({chain, pos + 1});
          chain = to;
          pos = 0;
          break;
        }
        case eval::Flow::kReturn:
          if (stack.empty()) {
            if (trace) trace->push_back({t, chain->name, 0, true, "policy"});
            return chain->policy == Policy::kDrop ? eval::Flow::kDrop : eval::Flow::kAccept;
          }
          chain = stack.back().chain;
          pos = stack.back().next;
          stack.pop_back();
          break;
        default:
          return f;
      }
    }
  });
}

bool HookResult::operator==(const HookResult& o) const {
  auto nat_eq = [](const NatTarget& a, const NatTarget& b) {
    return a.kind == b.kind && a.has_addr == b.has_addr && a.min_addr == b.min_addr &&
           a.max_addr == b.max_addr && a.has_port == b.has_port && a.min_port == b.min_port &&
           a.max_port == b.max_port && a.base_port == b.base_port && a.random == b.random &&
           a.random_fully == b.random_fully && a.persistent == b.persistent;
  };
  if (action != o.action || has_dnat != o.has_dnat || has_snat != o.has_snat || mark != o.mark ||
      ct_mark != o.ct_mark || notrack != o.notrack || matched_count != o.matched_count ||
      matched_overflow != o.matched_overflow || log_count != o.log_count || logs_overflow != o.logs_overflow) {
    return false;
  }
  if (action == Action::kReject && reject != o.reject) return false;
  if (has_dnat && !nat_eq(dnat, o.dnat)) return false;
  if (has_snat && !nat_eq(snat, o.snat)) return false;
  for (size_t k = 0; k < matched_count; ++k) {
    if (matched[k] != o.matched[k]) return false;
  }
  // The targets are different copies of the rule's LOG target: compare what they say.
  for (size_t k = 0; k < log_count; ++k) {
    const LogHit& a = logs[k];
    const LogHit& b = o.logs[k];
    if (a.rule != b.rule || a.mark != b.mark || a.target->level != b.target->level ||
        a.target->prefix != b.target->prefix || a.target->flags != b.target->flags) {
      return false;
    }
  }
  return true;
}

}  // namespace dpgate::rules
