#include "dpgate/dataplane/published_rules.hpp"

#include "dpgate/rules/interpreter.hpp"

namespace dpgate::dataplane {

PublishedRules::PublishedRules(uint64_t gen, rules::Ruleset rs, rules::Program prog, match::PayloadDatabase db,
                               uint32_t rules, uint32_t workers)
    : generation(gen), ruleset(std::move(rs)), program(std::move(prog)), rule_count(rules), payload(std::move(db)) {
  if (payload.pattern_count() > 0) {
    for (uint32_t w = 0; w < workers; ++w) scanners.push_back(std::make_unique<match::PayloadScanner>(payload));
  }
  for (int h = 0; h < rules::kHookCount; ++h) {
    for (const bool with_nat : {false, true}) {
      hook_work[size_t(h)][with_nat ? 1 : 0] = program.hook_has_work(rules::Hook(h), with_nat);
    }
  }
  packet_fields = ruleset.fields_read();
  const uint32_t rows = rules == 0 ? 1 : rules;
  for (uint32_t w = 0; w < workers; ++w) counters.emplace_back(new RuleCounter[rows]);
  const uint32_t slots = rows * kStateSlotsPerRule;
  nth.reset(new std::atomic<uint32_t>[slots]);
  limit_tat.reset(new std::atomic<uint64_t>[slots]);
  for (uint32_t i = 0; i < slots; ++i) {
    nth[i].store(0, std::memory_order_relaxed);
    limit_tat[i].store(0, std::memory_order_relaxed);
  }
  // xt_statistic starts each nth counter at every - packet.
  const rules::RuleIds ids = rules::rule_ids(ruleset);
  for (size_t t = 0; t < ruleset.tables.size(); ++t) {
    const auto& chains = ruleset.tables[t].chains;
    for (size_t c = 0; c < chains.size(); ++c) {
      for (size_t k = 0; k < chains[c].rules.size(); ++k) {
        const auto& matches = chains[c].rules[k].matches;
        for (uint32_t m = 0; m < matches.size(); ++m) {
          if (const auto* st = std::get_if<rules::StatisticMatch>(&matches[m]);
              st != nullptr && st->mode == rules::StatisticMatch::Mode::kNth) {
            nth[state_slot(ids.base[t][c] + static_cast<uint32_t>(k), m)].store(st->every - st->packet);
          }
        }
      }
    }
  }
}

}  // namespace dpgate::dataplane
