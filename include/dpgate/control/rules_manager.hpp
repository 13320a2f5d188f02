// The running rules: parse + compile in the control thread, publish to the
// workers with one atomic store, free the previous generation once every
// worker has been quiescent (rte_rcu_qsbr). A failed apply leaves the running
// rules untouched. Control thread only.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "dpgate/control/log.hpp"
#include "dpgate/dataplane/published_rules.hpp"
#include "dpgate/rules/ruleset.hpp"

struct rte_rcu_qsbr;

namespace dpgate::control {

struct ApplyResult {
  uint64_t generation = 0;
  double parse_ms = 0, compile_ms = 0;
  size_t rules = 0, chains = 0;
  std::string summary() const;
};

class RulesManager {
 public:
  // `slot` is where workers read the current generation; `qsbr` the RCU
  // variable every worker reports quiescent states to (may be null when no
  // worker runs: old generations are then freed at once).
  RulesManager(std::atomic<const dataplane::PublishedRules*>& slot, rte_rcu_qsbr* qsbr, uint32_t workers);
  ~RulesManager();

  // iptables-restore semantics: a full replace, or --noflush onto the running
  // rules. test_only: check and compile, publish nothing. Each new generation
  // and each refusal is logged (rte_log, "dpgate"), rate-limited.
  std::variant<ApplyResult, std::string> apply(const std::string& text, const std::string& file, bool noflush,
                                               bool test_only);

  // iptables-save text of the running rules; with counters ("[p:b]") if asked.
  std::string save(bool with_counters, const std::string& only_table = "") const;
  // The running rules as `iptables -L -v -n [-x]` lays them out: per chain a
  // header with the policy, one row per rule with packets, bytes, target,
  // protocol, interfaces, addresses; the last column gives the rule's matches
  // and target options in iptables-save syntax. Empty `chain`: every chain.
  // Returns {true, listing} or {false, error}.
  std::pair<bool, std::string> list(const std::string& table, const std::string& chain, bool exact) const;

  // Resets what save reports (workers keep counting; a baseline is subtracted).
  void zero();

  // Frees generations no worker can still see. Call from the control loop.
  void reclaim();

  const dataplane::PublishedRules* current() const { return current_; }
  size_t pending_reclaim() const { return retired_.size(); }

  // What the running rules are, for DPDK telemetry's /dpgate/rules: the
  // generation, where and when it came from, parse and compile times, rules
  // and chains per table. Telemetry callbacks run on DPDK's telemetry thread,
  // which is no RCU reader of the published rules: they read this copy,
  // rewritten by the control thread at each apply. Any thread.
  std::string telemetry_text() const;

 private:
  rules::Ruleset with_counters() const;
  void describe_for_telemetry(const ApplyResult& r, const std::string& file, const rules::Ruleset& rs);
  std::variant<ApplyResult, std::string> apply_rules(const std::string& text, const std::string& file, bool noflush,
                                                     bool test_only);

  std::atomic<const dataplane::PublishedRules*>& slot_;
  rte_rcu_qsbr* qsbr_;
  uint32_t workers_;
  const dataplane::PublishedRules* current_ = nullptr;
  std::vector<rules::Counters> baseline_;  // per rule id, subtracted by save
  struct Retired {
    const dataplane::PublishedRules* rules;
    uint64_t token;
  };
  std::vector<Retired> retired_;
  uint64_t next_generation_ = 1;
  mutable std::mutex telemetry_mutex_;  // control thread writes, telemetry thread reads
  std::string telemetry_ = "generation 0: no rules\n";
  EventLimiter events_{10, 50};  // apply lines in the log: 50 at once, then 10 a second
};

}  // namespace dpgate::control
