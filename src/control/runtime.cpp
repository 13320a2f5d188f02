#include "dpgate/control/runtime.hpp"

#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_random.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "dpgate/control/log.hpp"
#include "dpgate/dataplane/ports.hpp"

namespace dpgate::control {

namespace {

constexpr unsigned kLearnRingSize = 1024;
constexpr unsigned kLearnBatch = 64;
constexpr unsigned kLogBatch = 16;
constexpr unsigned kLogRecordsPerService = 256;  // bounds the control loop's turn
std::atomic<unsigned> g_instance{0};  // DPDK object names are global

uint64_t ms_to_cycles(uint64_t ms, uint64_t hz) { return ms * hz / 1000; }

void append(std::string& out, const char* fmt, auto... args) {
  char line[256];
  std::snprintf(line, sizeof line, fmt, args...);
  out += line;
}

}  // namespace

Runtime::Runtime(const Config& config) : config_(config), router_(std::make_unique<dataplane::Router>()) {}

std::variant<std::unique_ptr<Runtime>, std::string> Runtime::create(const Config& config) {
  std::unique_ptr<Runtime> rt(new Runtime(config));
  dataplane::Router& r = *rt->router_;
  const std::string suffix = std::to_string(g_instance.fetch_add(1));

  uint16_t max_mtu = 0;
  for (const auto& p : config.ports) max_mtu = std::max(max_mtu, p.mtu);
  const uint32_t data_room = RTE_PKTMBUF_HEADROOM + std::max<uint32_t>(RTE_MBUF_DEFAULT_DATAROOM, max_mtu + 14 + 4 + 4);
  r.pool = rte_pktmbuf_pool_create(("dpgate_mbufs" + suffix).c_str(), config.mbuf_pool_size,
                                   config.mbuf_cache_size, 0, static_cast<uint16_t>(data_room),
                                   static_cast<int>(rte_socket_id()));
  if (r.pool == nullptr) {
    return "cannot create the mbuf pool of " + std::to_string(config.mbuf_pool_size) +
           " mbufs: " + rte_strerror(rte_errno) + " (lower mbuf_pool_size or give the EAL more memory with -m)";
  }
  r.learn_ring = rte_ring_create_elem(("dpgate_learn" + suffix).c_str(), sizeof(route::NeighbourLearn),
                                      kLearnRingSize, static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
  if (r.learn_ring == nullptr) return std::string("cannot create the neighbour ring: ") + rte_strerror(rte_errno);

  dataplane::QueueSetup queues{static_cast<uint16_t>(config.workers), config.rx_descriptors,
                               config.tx_descriptors, r.pool};
  std::vector<route::PortAddresses> port_addresses;
  for (size_t i = 0; i < config.ports.size(); ++i) {
    const PortConfig& pc = config.ports[i];
    auto opened = dataplane::open_port(pc, queues);
    if (auto* err = std::get_if<std::string>(&opened)) return *err;
    const auto& port = std::get<dataplane::OpenedPort>(opened);
    rt->opened_ports_.push_back(port.port_id);
    dataplane::PortInfo& info = r.ports[i];
    info.port_id = port.port_id;
    std::snprintf(info.name, sizeof info.name, "%s", pc.name.c_str());
    info.mtu = pc.mtu;
    info.mac = port.mac;
    info.address_count = static_cast<uint8_t>(pc.addresses.size());
    std::copy(pc.addresses.begin(), pc.addresses.end(), info.addresses.begin());
    port_addresses.push_back({static_cast<uint16_t>(i), pc.addresses});
    for (const auto& a : pc.addresses) {
      if (a.len < 31) r.add_directed_broadcast(a.addr, ~a.mask());
    }
  }
  r.port_count = static_cast<uint16_t>(config.ports.size());

  std::vector<route::StaticRoute> routes;
  for (const auto& rc : config.routes) routes.push_back({rc.prefix, rc.gateway, rc.port});
  auto fib = route::Fib::build(port_addresses, routes, "dpgate_fib" + suffix);
  if (auto* err = std::get_if<std::string>(&fib)) return *err;
  rt->fib_ = std::move(std::get<std::unique_ptr<route::Fib>>(fib));
  r.fib.store(rt->fib_.get(), std::memory_order_release);

  rt->neighbours_ = std::make_unique<route::NeighbourTable>(config.arp_table_size);
  for (const auto& n : config.neighbours) {
    if (!rt->neighbours_->set(n.port, n.address, n.mac, route::NeighbourState::kStatic, 0)) {
      return "neighbours: more static entries than arp.table_size allows";
    }
  }
  r.neighbours = rt->neighbours_.get();

  r.burst = config.burst;
  r.tsc_hz = rte_get_tsc_hz();
  r.icmp_token_cycles = config.icmp_rate == 0 ? 0 : r.tsc_hz / config.icmp_rate;
  r.icmp_bucket_cycles = r.icmp_token_cycles * config.icmp_burst;
  r.log_token_cycles = config.log_rate == 0 ? 0 : std::max<uint64_t>(r.tsc_hz / config.log_rate, 1);
  r.log_bucket_cycles = r.log_token_cycles * config.log_burst;
  r.arp_retry_cycles = ms_to_cycles(config.arp_retry_ms, r.tsc_hz);
  r.arp_resolve_timeout_cycles = ms_to_cycles(config.arp_resolve_timeout_ms, r.tsc_hz);
  r.arp_queue = config.arp_queue;
  r.idle_sleep_us = config.idle_sleep_us;

  const size_t qsbr_size = rte_rcu_qsbr_get_memsize(config.workers);
  r.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("dpgate_qsbr", qsbr_size, RTE_CACHE_LINE_SIZE));
  if (r.qsbr == nullptr || rte_rcu_qsbr_init(r.qsbr, config.workers) != 0) return std::string("cannot set up RCU");
  r.worker_count = static_cast<uint16_t>(config.workers);
  rt->recent_ = std::make_unique<lb::RecentTable>(config.recent_size);
  r.recent = rt->recent_.get();
  for (uint32_t a : config.local_addresses) r.extra_local[r.extra_local_count++] = a;
  for (uint16_t from = 0; from < config.workers && config.workers > 1; ++from) {
    for (uint16_t to = 0; to < config.workers; ++to) {
      if (from == to) continue;
      const std::string tag = suffix + "_" + std::to_string(from) + "_" + std::to_string(to);
      r.handover[from][to] = rte_ring_create(("dpg_ho" + tag).c_str(), 1024, static_cast<int>(rte_socket_id()),
                                             RING_F_SP_ENQ | RING_F_SC_DEQ);
      r.messages[from][to] = rte_ring_create_elem(("dpg_msg" + tag).c_str(), sizeof(dataplane::WorkerMessage), 4096,
                                                  static_cast<int>(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (r.handover[from][to] == nullptr || r.messages[from][to] == nullptr) {
        return std::string("cannot create worker rings: ") + rte_strerror(rte_errno);
      }
    }
  }
  for (uint16_t q = 0; q < config.workers; ++q) {
    r.log_rings[q] = rte_ring_create_elem(("dpg_log" + suffix + "_" + std::to_string(q)).c_str(),
                                          sizeof(dataplane::LogRecord), config.log_ring_size,
                                          static_cast<int>(rte_socket_id()),
                                          RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    if (r.log_rings[q] == nullptr) return std::string("cannot create the LOG record rings: ") + rte_strerror(rte_errno);
  }
  conntrack::TableConfig flow_config;
  flow_config.capacity = std::max<uint32_t>(config.conntrack_max_flows / config.workers, 1024);
  flow_config.ticks_per_second = r.tsc_hz;
  flow_config.timeouts = config.conntrack_timeouts;
  flow_config.accounting = config.conntrack_accounting;
  // A secret per start: with a known seed, anyone sending through the
  // router can pick tuples that share a bucket chain (hash flooding).
  // rte_rand is seeded from getentropy() at EAL init.
  flow_config.hash_seed = rte_rand();
  for (uint16_t q = 0; q < config.workers; ++q) {
    rt->workers_.push_back(std::make_unique<dataplane::Worker>(r, q, 0, flow_config));
    rte_rcu_qsbr_thread_register(r.qsbr, q);
    rte_rcu_qsbr_thread_online(r.qsbr, q);
  }
  rt->rules_ = std::make_unique<RulesManager>(r.rules, r.qsbr, config.workers);
  if (!config.rules_file.empty()) {
    if (auto err = rt->reload_rules()) return "rules: " + *err;
  }
  return rt;
}

std::variant<uint64_t, std::string> Runtime::flows(dataplane::FlowRequest::Op op, const conntrack::FlowFilter& filter,
                                                   const std::function<void(const conntrack::FlowInfo&)>& each) {
  uint64_t matched = 0;
  for (auto& w : workers_) {
    dataplane::FlowRequest& req = w->flow_request;
    uint32_t cursor = 0;
    for (;;) {
      req.op = op;
      req.filter = filter;
      req.cursor = cursor;
      req.state.store(1, std::memory_order_release);
      const uint64_t deadline = rte_rdtsc() + rte_get_tsc_hz();
      while (req.state.load(std::memory_order_acquire) != 2) {
        if (rte_rdtsc() > deadline) {
          req.state.store(0, std::memory_order_relaxed);
          return "worker " + std::to_string(w->queue) + " did not answer within a second";
        }
        rte_pause();
      }
      matched += req.matched;
      if (op == dataplane::FlowRequest::Op::kList) {
        for (const auto& f : req.flows) each(f);
      }
      const bool done = req.done;
      cursor = req.next_cursor;
      req.state.store(0, std::memory_order_relaxed);
      if (done) break;
    }
  }
  return matched;
}

std::optional<std::string> Runtime::reload_rules() {
  std::ifstream in(config_.rules_file);
  if (!in) return config_.rules_file + ": cannot read the file";
  std::stringstream text;
  text << in.rdbuf();
  auto applied = rules_->apply(text.str(), config_.rules_file, false, false);
  if (auto* err = std::get_if<std::string>(&applied)) return *err;
  return std::nullopt;
}

Runtime::~Runtime() {
  rules_.reset();
  for (auto& w : workers_) dataplane::worker_drain(*w);
  for (uint16_t id : opened_ports_) dataplane::close_port(id);
  if (router_) {
    rte_ring_free(router_->learn_ring);
    for (auto& row : router_->handover) {
      for (rte_ring* ring : row) {
        while (ring != nullptr && rte_ring_count(ring) > 0) {
          void* m;
          if (rte_ring_dequeue(ring, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
        rte_ring_free(ring);
      }
    }
    for (auto& row : router_->messages) {
      for (rte_ring* ring : row) rte_ring_free(ring);
    }
    for (rte_ring* ring : router_->log_rings) rte_ring_free(ring);
    rte_free(router_->qsbr);
    rte_mempool_free(router_->pool);
  }
}

unsigned Runtime::service(uint64_t now) {
  route::NeighbourLearn batch[kLearnBatch];
  unsigned handled = 0;
  unsigned n;
  while ((n = rte_ring_sc_dequeue_burst_elem(router_->learn_ring, batch, sizeof batch[0], kLearnBatch, nullptr)) > 0) {
    for (unsigned i = 0; i < n; ++i) neighbours_->learn(batch[i].port, batch[i].ip, batch[i].mac, now);
    handled += n;
  }
  rules_->reclaim();
  drain_log_records();
  const uint64_t hz = router_->tsc_hz;
  if (now - last_age_tsc_ >= hz) {
    neighbours_->age(now, ms_to_cycles(config_.arp_reachable_ms, hz), ms_to_cycles(config_.arp_stale_ms, hz));
    check_links();
    last_age_tsc_ = now;
  }
  return handled;
}

void Runtime::drain_log_records() {
  dataplane::LogRecord batch[kLogBatch];
  unsigned done = 0;
  for (const auto& w : workers_) {
    rte_ring* ring = router_->log_rings[w->queue];
    unsigned n;
    while (done < kLogRecordsPerService &&
           (n = rte_ring_sc_dequeue_burst_elem(ring, batch, sizeof batch[0], kLogBatch, nullptr)) > 0) {
      for (unsigned i = 0; i < n; ++i) {
        const dataplane::LogRecord& rec = batch[i];
        // syslog levels 0-7 are RTE_LOG_EMERG (1) .. RTE_LOG_DEBUG (8).
        const uint32_t level = std::min<uint32_t>(rec.level, 7) + 1;
        if (log_sink_) {
          log_sink_(rec, dataplane::format_log_record(rec));
        } else if (rte_log_can_log(static_cast<uint32_t>(logtype_rules()), level)) {
          rte_log(level, static_cast<uint32_t>(logtype_rules()), "%s\n", dataplane::format_log_record(rec).c_str());
        }
      }
      log_emitted_.store(log_emitted_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
      done += n;
    }
  }
}

// Reports each port's link when first seen and whenever it changes; called
// once a second, so a flapping link logs at most one line a second.
void Runtime::check_links() {
  link_up_.resize(router_->port_count, -1);
  for (uint16_t p = 0; p < router_->port_count; ++p) {
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(router_->ports[p].port_id, &link) != 0) continue;
    const int up = link.link_status == RTE_ETH_LINK_UP ? 1 : 0;
    if (up == link_up_[p]) continue;
    const char* name = config_.ports[p].name.c_str();
    if (up == 0) {
      log_event(link_up_[p] == -1 ? RTE_LOG_NOTICE : RTE_LOG_WARNING, "port %s: link down", name);
    } else if (link.link_speed == RTE_ETH_SPEED_NUM_NONE || link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN) {
      log_event(RTE_LOG_NOTICE, "port %s: link up", name);
    } else {
      log_event(RTE_LOG_NOTICE, "port %s: link up, %u Mbps %s-duplex", name, link.link_speed,
                link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX ? "full" : "half");
    }
    link_up_[p] = up;
  }
}

std::string Runtime::stats_text() const {
  std::string out;
  const dataplane::Router& r = *router_;
  for (uint16_t p = 0; p < r.port_count; ++p) {
    rte_eth_stats dev{};
    rte_eth_stats_get(r.ports[p].port_id, &dev);
    uint64_t rx = 0, tx = 0, rx_bytes = 0, tx_bytes = 0;
    for (const auto& w : workers_) {
      rx += w->counters.port[p].rx_packets.get();
      rx_bytes += w->counters.port[p].rx_bytes.get();
      tx += w->counters.port[p].tx_packets.get();
      tx_bytes += w->counters.port[p].tx_bytes.get();
    }
    append(out, "port %s (%s): rx %" PRIu64 " pkts %" PRIu64 " bytes, tx %" PRIu64 " pkts %" PRIu64
           " bytes; device: ipackets %" PRIu64 " opackets %" PRIu64 " imissed %" PRIu64 " ierrors %" PRIu64
           " oerrors %" PRIu64 " rx_nombuf %" PRIu64 "\n",
           config_.ports[p].name.c_str(), config_.ports[p].device.c_str(), rx, rx_bytes, tx, tx_bytes,
           dev.ipackets, dev.opackets, dev.imissed, dev.ierrors, dev.oerrors, dev.rx_nombuf);
  }
  for (const auto& w : workers_) {
    const auto& c = w->counters;
    append(out, "worker %u (lcore %u): forwarded %" PRIu64 " local %" PRIu64 " arp_replies %" PRIu64
           " arp_requests %" PRIu64 " icmp_errors %" PRIu64 " icmp_rate_limited %" PRIu64 " pending_arp %zu\n",
           w->queue, w->lcore_id, c.forwarded.get(), c.local_delivered.get(), c.arp_replies_sent.get(),
           c.arp_requests_sent.get(), c.icmp_errors_sent.get(), c.icmp_rate_limited.get(), w->pending.size());
    const auto& ct = w->flows->stats();
    append(out, "  conntrack: flows %u/%u inserted %" PRIu64 " expired %" PRIu64 " early_dropped %" PRIu64
           " refused %" PRIu64 " clashed %" PRIu64 " invalid %" PRIu64 " handed_over %" PRIu64 " taken_over %" PRIu64
           " redirects_sent %" PRIu64 " redirects_lost %" PRIu64 " departures_lost %" PRIu64 "\n",
           w->flows->size(), w->flows->capacity(), ct.inserted.get(), ct.expired.get(), ct.early_dropped.get(),
           ct.refused.get(), ct.clashed.get(), c.ct_invalid.get(), c.handed_over.get(), c.taken_over.get(),
           c.redirects_sent.get(), c.redirects_lost.get(), ct.departures_lost.get());
    std::string drops;
    for (size_t i = 1; i < c.drops.size(); ++i) {
      if (c.drops[i].get() == 0) continue;
      append(drops, " %s=%" PRIu64, std::string(net::drop_reason_name(static_cast<net::DropReason>(i))).c_str(),
             c.drops[i].get());
    }
    out += "  drops:" + (drops.empty() ? std::string(" none") : drops) + "\n";
    append(out, "  log: records %" PRIu64 " suppressed %" PRIu64 " ring_full %" PRIu64 "\n", c.log_records.get(),
           c.log_suppressed.get(), c.log_ring_full.get());
  }
  append(out, "log: emitted %" PRIu64 "\n", log_emitted());
  append(out, "neighbours: %u entries\n", neighbours_->size());
  append(out, "recent: %u addresses, %" PRIu64 " evicted\n", recent_->size(), recent_->evictions());
  const auto* current = rules_->current();
  append(out, "rules: generation %llu, %u rules\n", static_cast<unsigned long long>(current ? current->generation : 0),
         current ? current->rule_count : 0u);
  return out;
}

std::string Runtime::metrics_text() const {
  std::string out;
  const dataplane::Router& r = *router_;
  auto family = [&](const char* name, const char* type, const char* help) {
    append(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  };
  struct PortMetric {
    const char* name;
    const char* help;
    uint64_t (*get)(const dataplane::PortCounters&);
  };
  const PortMetric port_metrics[] = {
      {"dpgate_port_rx_packets_total", "Packets received by workers", [](const dataplane::PortCounters& c) { return c.rx_packets.get(); }},
      {"dpgate_port_rx_bytes_total", "Bytes received by workers", [](const dataplane::PortCounters& c) { return c.rx_bytes.get(); }},
      {"dpgate_port_tx_packets_total", "Packets transmitted", [](const dataplane::PortCounters& c) { return c.tx_packets.get(); }},
      {"dpgate_port_tx_bytes_total", "Bytes transmitted", [](const dataplane::PortCounters& c) { return c.tx_bytes.get(); }},
  };
  for (const auto& m : port_metrics) {
    family(m.name, "counter", m.help);
    for (uint16_t p = 0; p < r.port_count; ++p) {
      for (const auto& w : workers_) {
        append(out, "%s{port=\"%s\",worker=\"%u\"} %" PRIu64 "\n", m.name, config_.ports[p].name.c_str(), w->queue,
               m.get(w->counters.port[p]));
      }
    }
  }
  family("dpgate_port_imissed_total", "counter", "Packets the device dropped for lack of RX descriptors");
  for (uint16_t p = 0; p < r.port_count; ++p) {
    rte_eth_stats dev{};
    rte_eth_stats_get(r.ports[p].port_id, &dev);
    append(out, "dpgate_port_imissed_total{port=\"%s\"} %" PRIu64 "\n", config_.ports[p].name.c_str(), dev.imissed);
  }
  struct WorkerMetric {
    const char* name;
    const char* help;
    const dataplane::Counter dataplane::WorkerCounters::*field;
  };
  const WorkerMetric worker_metrics[] = {
      {"dpgate_forwarded_packets_total", "Packets routed to another port", &dataplane::WorkerCounters::forwarded},
      {"dpgate_local_packets_total", "Packets addressed to dpgate and answered", &dataplane::WorkerCounters::local_delivered},
      {"dpgate_icmp_errors_sent_total", "ICMP errors dpgate originated", &dataplane::WorkerCounters::icmp_errors_sent},
      {"dpgate_icmp_rate_limited_total", "ICMP errors suppressed by the rate limit", &dataplane::WorkerCounters::icmp_rate_limited},
      {"dpgate_arp_requests_sent_total", "ARP requests sent", &dataplane::WorkerCounters::arp_requests_sent},
      {"dpgate_arp_replies_sent_total", "ARP replies sent", &dataplane::WorkerCounters::arp_replies_sent},
      {"dpgate_log_records_total", "LOG target records queued for the log", &dataplane::WorkerCounters::log_records},
      {"dpgate_log_suppressed_total", "LOG target records held back by the rate limit",
       &dataplane::WorkerCounters::log_suppressed},
      {"dpgate_log_ring_full_total", "LOG target records lost to a full log ring",
       &dataplane::WorkerCounters::log_ring_full},
  };
  for (const auto& m : worker_metrics) {
    family(m.name, "counter", m.help);
    for (const auto& w : workers_) {
      append(out, "%s{worker=\"%u\"} %" PRIu64 "\n", m.name, w->queue, (w->counters.*m.field).get());
    }
  }
  family("dpgate_drops_total", "counter", "Packets dropped, by reason");
  for (const auto& w : workers_) {
    for (size_t i = 1; i < w->counters.drops.size(); ++i) {
      append(out, "dpgate_drops_total{worker=\"%u\",reason=\"%s\"} %" PRIu64 "\n", w->queue,
             std::string(net::drop_reason_name(static_cast<net::DropReason>(i))).c_str(), w->counters.drops[i].get());
    }
  }
  family("dpgate_log_emitted_total", "counter", "LOG target records printed through rte_log");
  append(out, "dpgate_log_emitted_total %" PRIu64 "\n", log_emitted());
  family("dpgate_neighbours", "gauge", "Entries in the neighbour table");
  append(out, "dpgate_neighbours %u\n", neighbours_->size());
  family("dpgate_recent_addresses", "gauge", "Addresses in the recent lists, all lists together");
  append(out, "dpgate_recent_addresses %u\n", recent_->size());
  family("dpgate_recent_evictions_total", "counter",
         "Least recently hit recent addresses replaced by new ones in a full table");
  append(out, "dpgate_recent_evictions_total %" PRIu64 "\n", recent_->evictions());
  return out;
}

std::string Runtime::neighbours_text() const {
  std::string out;
  for (const auto& row : neighbours_->rows()) {
    const char* state = row.neighbour.state == route::NeighbourState::kStatic    ? "PERMANENT"
                        : row.neighbour.state == route::NeighbourState::kStale   ? "STALE"
                                                                                 : "REACHABLE";
    append(out, "%s dev %s lladdr %s %s\n", net::format_ipv4(row.ip).c_str(), config_.ports[row.port].name.c_str(),
           net::format_mac(row.neighbour.mac).c_str(), state);
  }
  return out;
}

std::string Runtime::routes_text() const {
  std::string out;
  const route::Fib* fib = router_->fib.load(std::memory_order_acquire);
  for (const auto& e : fib->entries()) {
    const std::string prefix = e.prefix.len == 0 ? std::string("default")
                                                 : net::format_ipv4(e.prefix.addr) + "/" + std::to_string(e.prefix.len);
    const char* port = config_.ports[e.next_hop.port].name.c_str();
    switch (e.next_hop.kind) {
      case route::NextHopKind::kLocal:
        append(out, "local %s dev %s\n", prefix.c_str(), port);
        break;
      case route::NextHopKind::kDirectedBroadcast:
        append(out, "broadcast %s dev %s\n", prefix.c_str(), port);
        break;
      case route::NextHopKind::kForward:
        if (e.next_hop.gateway != 0) {
          append(out, "%s via %s dev %s\n", prefix.c_str(), net::format_ipv4(e.next_hop.gateway).c_str(), port);
        } else {
          append(out, "%s dev %s scope link\n", prefix.c_str(), port);
        }
        break;
    }
  }
  return out;
}

}  // namespace dpgate::control
