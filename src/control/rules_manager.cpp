#include "dpgate/control/rules_manager.hpp"

#include <rte_rcu_qsbr.h>

#include <chrono>
#include <ctime>
#include <type_traits>
#include <cstdio>

#include "dpgate/control/log.hpp"
#include "dpgate/match/payload.hpp"
#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/save.hpp"

namespace dpgate::control {

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

std::string ApplyResult::summary() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "generation %llu: %zu rules in %zu chains; parse %.1f ms, compile %.1f ms\n",
                static_cast<unsigned long long>(generation), rules, chains, parse_ms, compile_ms);
  return buf;
}

RulesManager::RulesManager(std::atomic<const dataplane::PublishedRules*>& slot, rte_rcu_qsbr* qsbr, uint32_t workers)
    : slot_(slot), qsbr_(qsbr), workers_(workers) {}

RulesManager::~RulesManager() {
  slot_.store(nullptr, std::memory_order_release);
  // The owner stops the workers before destroying the manager.
  for (const auto& r : retired_) delete r.rules;
  delete current_;
}

std::variant<ApplyResult, std::string> RulesManager::apply(const std::string& text, const std::string& file,
                                                           bool noflush, bool test_only) {
  auto applied = apply_rules(text, file, noflush, test_only);
  // A client may apply (or fail to) in a loop: the log keeps a bounded share.
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  if (!events_.allow(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()))) {
    return applied;
  }
  char held[64] = "";
  if (events_.suppressed() != 0) {
    std::snprintf(held, sizeof held, " (%llu earlier lines suppressed)",
                  static_cast<unsigned long long>(events_.suppressed()));
  }
  if (const auto* err = std::get_if<std::string>(&applied)) {
    log_event(RTE_LOG_ERR, "rules from %s refused, running rules kept: %s%s", file.c_str(), err->c_str(), held);
  } else if (!test_only) {
    const auto& r = std::get<ApplyResult>(applied);
    log_event(RTE_LOG_INFO, "rules generation %llu from %s: %zu rules in %zu chains; parse %.1f ms, compile %.1f ms%s",
              static_cast<unsigned long long>(r.generation), file.c_str(), r.rules, r.chains, r.parse_ms,
              r.compile_ms, held);
  }
  return applied;
}

void RulesManager::describe_for_telemetry(const ApplyResult& r, const std::string& file, const rules::Ruleset& rs) {
  std::string text = r.summary();
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  text += "source " + file + ", applied " + when + "\n";
  for (int t = 0; t < rules::kTableCount; ++t) {
    const rules::Table& table = rs.tables[size_t(t)];
    if (!table.present) continue;
    size_t count = 0;
    for (const rules::Chain& chain : table.chains) count += chain.rules.size();
    text += std::string("table ") + rules::table_name(rules::TableId(t)) + ": " + std::to_string(count) +
            " rules in " + std::to_string(table.chains.size()) + " chains\n";
  }
  const std::lock_guard<std::mutex> lock(telemetry_mutex_);
  telemetry_ = std::move(text);
}

std::string RulesManager::telemetry_text() const {
  const std::lock_guard<std::mutex> lock(telemetry_mutex_);
  return telemetry_;
}

std::variant<ApplyResult, std::string> RulesManager::apply_rules(const std::string& text, const std::string& file,
                                                                 bool noflush, bool test_only) {
  ApplyResult result;
  auto t0 = std::chrono::steady_clock::now();
  rules::ParseOptions options;
  options.noflush = noflush;
  auto parsed = (noflush && current_ != nullptr) ? rules::apply_ruleset(current_->ruleset, text, file, options)
                                                 : rules::parse_ruleset(text, file, options);
  if (!parsed) return parsed.error().to_string();
  result.parse_ms = ms_since(t0);
  auto t1 = std::chrono::steady_clock::now();
  auto program = rules::compile_ruleset(*parsed);
  if (!program) return program.error().to_string();
  auto payload = match::PayloadDatabase::build(*parsed);
  if (!payload) return payload.error().to_string();
  result.compile_ms = ms_since(t1);
  result.rules = parsed->rule_count();
  result.chains = parsed->chain_count();
  if (test_only) {
    result.generation = current_ ? current_->generation : 0;
    return result;
  }
  const auto rule_count = static_cast<uint32_t>(parsed->rule_count());
  auto* fresh = new dataplane::PublishedRules(next_generation_++, std::move(*parsed), std::move(*program),
                                              std::move(*payload), rule_count, workers_);
  result.generation = fresh->generation;
  describe_for_telemetry(result, file, fresh->ruleset);
  const dataplane::PublishedRules* old = current_;
  current_ = fresh;
  baseline_.assign(rule_count, rules::Counters{});
  slot_.store(fresh, std::memory_order_release);
  if (old != nullptr) {
    retired_.push_back({old, qsbr_ ? rte_rcu_qsbr_start(qsbr_) : 0});
    reclaim();
  }
  return result;
}

void RulesManager::reclaim() {
  std::erase_if(retired_, [&](const Retired& r) {
    if (qsbr_ != nullptr && rte_rcu_qsbr_check(qsbr_, r.token, false) != 1) return false;
    delete r.rules;
    return true;
  });
}

rules::Ruleset RulesManager::with_counters() const {
  rules::Ruleset rs = current_->ruleset;
  const rules::RuleIds ids = rules::rule_ids(rs);
  for (size_t t = 0; t < rs.tables.size(); ++t) {
    auto& chains = rs.tables[t].chains;
    for (size_t c = 0; c < chains.size(); ++c) {
      for (size_t k = 0; k < chains[c].rules.size(); ++k) {
        const uint32_t id = ids.base[t][c] + static_cast<uint32_t>(k);
        rules::Counters sum;
        for (const auto& row : current_->counters) {
          sum.packets += row[id].packets.get();
          sum.bytes += row[id].bytes.get();
        }
        sum.packets -= baseline_[id].packets;
        sum.bytes -= baseline_[id].bytes;
        chains[c].rules[k].counters = sum;
      }
    }
  }
  return rs;
}

std::string RulesManager::save(bool counters, const std::string& only_table) const {
  if (current_ == nullptr) return "";
  rules::SaveOptions options;
  options.rule_counters = counters;
  rules::Ruleset rs = counters ? with_counters() : current_->ruleset;
  if (!only_table.empty()) {
    for (size_t t = 0; t < rs.tables.size(); ++t) {
      if (only_table != rules::table_name(static_cast<rules::TableId>(t))) rs.tables[t].present = false;
    }
  }
  return rules::save_ruleset(rs, options);
}

namespace {

// iptables' human-readable numbers: K, M, G above 99999 (as print_num).
std::string human(uint64_t n, bool exact) {
  char buf[32];
  if (exact) {
    std::snprintf(buf, sizeof buf, "%8llu", static_cast<unsigned long long>(n));
    return buf;
  }
  const char* units = " KMGT";
  int u = 0;
  while (n > 99999 && u < 4) {
    n = (n + 500) / 1000;
    ++u;
  }
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%5llu", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%4llu%c", static_cast<unsigned long long>(n), units[u]);
  }
  return buf;
}

std::string net_text(const rules::Ipv4Net& n, bool inverted) {
  char buf[40];
  const uint32_t a = n.addr;
  const int len = __builtin_popcount(n.mask);
  std::snprintf(buf, sizeof buf, "%s%u.%u.%u.%u/%d", inverted ? "!" : "", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                a & 255, len);
  return buf;
}

std::string iface_text(const rules::Iface& f, bool inverted) {
  if (f.empty()) return "*";
  return (inverted ? "!" : "") + f.name + (f.prefix ? "+" : "");
}

std::string target_name(const rules::Ruleset& rs, const rules::Rule& r) {
  return std::visit(
      [&](const auto& t) -> std::string {
        using T = std::decay_t<decltype(t)>;
        if constexpr (std::is_same_v<T, rules::NoTarget>) return "";
        else if constexpr (std::is_same_v<T, rules::VerdictTarget>)
          return t.verdict == rules::Verdict::kAccept ? "ACCEPT" : t.verdict == rules::Verdict::kDrop ? "DROP" : "RETURN";
        else if constexpr (std::is_same_v<T, rules::JumpTarget>) return t.chain;
        else if constexpr (std::is_same_v<T, rules::RejectTarget>) return "REJECT";
        else if constexpr (std::is_same_v<T, rules::NatTarget>) {
          using K = rules::NatTarget::Kind;
          return t.kind == K::kDnat ? "DNAT" : t.kind == K::kSnat ? "SNAT" : t.kind == K::kMasquerade ? "MASQUERADE" : "REDIRECT";
        } else if constexpr (std::is_same_v<T, rules::MarkTarget>) return "MARK";
        else if constexpr (std::is_same_v<T, rules::ConnmarkTarget>) return "CONNMARK";
        else if constexpr (std::is_same_v<T, rules::LogTarget>) return "LOG";
        else return "NOTRACK";
      },
      r.target);
  (void)rs;
}

}  // namespace

std::pair<bool, std::string> RulesManager::list(const std::string& table, const std::string& chain,
                                                bool exact) const {
  if (current_ == nullptr) return {true, ""};
  const rules::Ruleset rs = with_counters();
  auto t = rules::table_from_name(table.empty() ? "filter" : table);
  if (!t) return {false, "unknown table '" + table + "'"};
  const rules::Table& tb = rs.table(*t);
  std::string out;
  bool found = chain.empty();
  for (const auto& c : tb.chains) {
    if (!chain.empty() && c.name != chain) continue;
    found = true;
    if (!out.empty()) out += "\n";
    if (c.builtin) {
      out += "Chain " + c.name + " (policy " + (c.policy == rules::Policy::kDrop ? "DROP" : "ACCEPT") + " " +
             std::to_string(c.counters.packets) + " packets, " + std::to_string(c.counters.bytes) + " bytes)\n";
    } else {
      out += "Chain " + c.name + " (references)\n";
    }
    out += exact ? "    pkts      bytes target     prot opt in     out     source               destination         \n"
                 : " pkts bytes target     prot opt in     out     source               destination         \n";
    for (const auto& r : c.rules) {
      // The last column: what iptables-save prints after the header fields.
      rules::Rule rest = r;
      rest.src = rest.dst = {};
      rest.inv_src = rest.inv_dst = false;
      rest.in = rest.out = {};
      rest.inv_in = rest.inv_out = false;
      rest.proto = 0;
      rest.inv_proto = false;
      rest.fragment = rest.inv_fragment = false;
      std::string spec = rules::rule_spec_text(rest);
      const std::string jump = "-j " + target_name(rs, r);
      if (const size_t at = spec.find(jump); at != std::string::npos) spec.erase(at, jump.size());
      while (!spec.empty() && spec.front() == ' ') spec.erase(0, 1);
      while (!spec.empty() && spec.back() == ' ') spec.pop_back();
      const std::string proto = r.proto == 0 ? "all" : r.proto == 6 ? "tcp" : r.proto == 17 ? "udp" : r.proto == 1 ? "icmp" : std::to_string(r.proto);
      const rules::Counters counters = r.counters.value_or(rules::Counters{});
      // The fixed columns are short; the rest is the rule's whole spec, which
      // comments and string patterns make as long as they like.
      char columns[256];
      std::snprintf(columns, sizeof columns, "%s %s %-10s %-4s %-3s %-6s %-6s %-20s %-20s ",
                    human(counters.packets, exact).c_str(), human(counters.bytes, exact).c_str(),
                    target_name(rs, r).c_str(), ((r.inv_proto ? "!" : "") + proto).c_str(),
                    r.fragment ? (r.inv_fragment ? "!f" : "-f") : "--", iface_text(r.in, r.inv_in).c_str(),
                    iface_text(r.out, r.inv_out).c_str(), net_text(r.src, r.inv_src).c_str(),
                    net_text(r.dst, r.inv_dst).c_str());
      out += columns + spec + "\n";
    }
  }
  if (!found) return {false, "no chain '" + chain + "' in table " + rules::table_name(*t)};
  return {true, out};
}

void RulesManager::zero() {
  if (current_ == nullptr) return;
  for (uint32_t id = 0; id < current_->rule_count; ++id) {
    rules::Counters sum;
    for (const auto& row : current_->counters) {
      sum.packets += row[id].packets.get();
      sum.bytes += row[id].bytes.get();
    }
    baseline_[id] = sum;
  }
}

}  // namespace dpgate::control
