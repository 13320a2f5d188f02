// The running router as the control thread holds it: mbuf pool, opened ports,
// the shared Router, its forwarding and neighbour tables, and one Worker per
// worker lcore. The control thread creates it, launches the workers, services
// their messages (neighbour learning, LOG records) and ages tables, and tears
// it down.
// Every method: control thread only.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "dpgate/control/config.hpp"
#include "dpgate/control/rules_manager.hpp"
#include "dpgate/dataplane/packet_log.hpp"
#include "dpgate/dataplane/router.hpp"
#include "dpgate/dataplane/worker.hpp"

namespace dpgate::control {

class Runtime {
 public:
  // Opens the ports and builds the tables. Needs the EAL. Errors name the port
  // or route at fault; nothing stays open after an error.
  static std::variant<std::unique_ptr<Runtime>, std::string> create(const Config& config);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  dataplane::Router& router() { return *router_; }
  std::vector<std::unique_ptr<dataplane::Worker>>& workers() { return workers_; }
  const Config& config() const { return config_; }
  RulesManager& rules() { return *rules_; }

  // Drains neighbour-learning messages and the workers' LOG records (each
  // printed through rte_log, logtype "dpgate.rules", at the rule's level);
  // ages the neighbour table and reports port link changes at most once a
  // second. Returns the number of neighbour messages handled.
  unsigned service(uint64_t now_tsc);

  // Where drained LOG records go instead of rte_log (tests): the record and
  // its kernel-format line. An empty function restores rte_log.
  using LogSink = std::function<void(const dataplane::LogRecord&, const std::string& line)>;
  void set_log_sink(LogSink sink) { log_sink_ = std::move(sink); }
  // LOG records drained and printed so far. Any thread.
  uint64_t log_emitted() const { return log_emitted_.load(std::memory_order_relaxed); }

  // Walks every worker's flows through its FlowRequest mailbox: lists
  // (calling `each`), deletes the matching ones, or flushes. Returns how
  // many matched, or an error when a worker did not answer within a second.
  std::variant<uint64_t, std::string> flows(dataplane::FlowRequest::Op op, const conntrack::FlowFilter& filter,
                                            const std::function<void(const conntrack::FlowInfo&)>& each);

  // Re-reads the config's rules file and applies it (SIGHUP, start-up).
  // An error leaves the running rules as they were.
  std::optional<std::string> reload_rules();

  // Human-readable counters: per port (device and software), per worker, drops by reason.
  std::string stats_text() const;
  // The same counters in Prometheus text exposition format.
  std::string metrics_text() const;
  // `ip neigh`-like and `ip route`-like listings.
  std::string neighbours_text() const;
  std::string routes_text() const;
  std::string rules_telemetry_text() const { return rules_->telemetry_text(); }

 private:
  explicit Runtime(const Config& config);
  Config config_;
  std::unique_ptr<dataplane::Router> router_;
  std::unique_ptr<route::Fib> fib_;
  std::unique_ptr<route::NeighbourTable> neighbours_;
  std::vector<std::unique_ptr<dataplane::Worker>> workers_;
  std::unique_ptr<RulesManager> rules_;
  std::unique_ptr<lb::RecentTable> recent_;
  std::vector<uint16_t> opened_ports_;
  uint64_t last_age_tsc_ = 0;

  void drain_log_records();
  void check_links();
  LogSink log_sink_;
  std::atomic<uint64_t> log_emitted_{0};  // written by the control thread, read by telemetry too
  std::vector<int> link_up_;              // per port: -1 not yet seen, else the last status reported
};

}  // namespace dpgate::control
