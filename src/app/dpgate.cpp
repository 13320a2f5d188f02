// dpgate: the daemon. Usage:
//   dpgate [EAL options] -- -c FILE [--check]
// The main lcore becomes the control thread; each worker lcore runs a Worker.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

#include "dpgate/control/commands.hpp"
#include "dpgate/control/config.hpp"
#include "dpgate/control/log.hpp"
#include "dpgate/control/runtime.hpp"
#include "dpgate/control/server.hpp"
#include "dpgate/net/packet.hpp"

namespace {

using dpgate::control::log_event;

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_print_stats = 0;
volatile std::sig_atomic_t g_reload = 0;

void on_stop(int) { g_stop = 1; }
void on_stats(int) { g_print_stats = 1; }
void on_reload(int) { g_reload = 1; }

constexpr char kUsage[] =
    "usage: dpgate [EAL options] -- -c FILE [--check]\n"
    "  -c, --config FILE  the daemon configuration (libconfig; see conf/dpgate.conf)\n"
    "      --check        validate the configuration and exit\n"
    "  -h, --help         this text\n"
    "Signals: SIGINT/SIGTERM stop cleanly and print final counters; SIGUSR1 prints counters;\n"
    "         SIGHUP re-reads the config's rules file and applies it (errors keep the running rules).\n"
    "Logging: events and iptables LOG records go through DPDK's log (stderr and syslog), filtered by the\n"
    "         EAL's --log-level=dpgate:LEVEL and --log-level=dpgate.rules:LEVEL (LEVEL: err, warning, notice,\n"
    "         info, debug; dpgate.rules applies to LOG records at their --log-level).\n"
    "Example: dpgate --no-huge --no-pci -l 0-1 --vdev net_af_packet0,iface=veth0 -- -c conf/demo.conf\n";

struct AppArgs {
  std::string config;
  bool check = false;
};

// Application options come after "--"; everything before belongs to the EAL.
bool parse_app_args(int argc, char** argv, int first, AppArgs& out) {
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      out.config = argv[++i];
    } else if (a == "--check") {
      out.check = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      std::fprintf(stderr, "dpgate: unknown option '%s'\n%s", a.c_str(), kUsage);
      return false;
    }
  }
  if (out.config.empty()) {
    std::fprintf(stderr, "dpgate: -c FILE is required\n%s", kUsage);
    return false;
  }
  return true;
}

// The runtime the telemetry callbacks read. Set by the control thread before
// they are registered; they run on DPDK's telemetry thread and read only
// counters (relaxed atomics) and the neighbour table (lock-free).
dpgate::control::Runtime* g_runtime = nullptr;

int telemetry_text(const char* /*cmd*/, const char* /*params*/, rte_tel_data* d,
                   std::string (dpgate::control::Runtime::*render)() const) {
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  const std::string text = (g_runtime->*render)();
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    rte_tel_data_add_array_string(d, text.substr(begin, std::min<size_t>(end - begin, RTE_TEL_MAX_STRING_LEN - 1)).c_str());
    begin = end + 1;
  }
  return 0;
}

void register_telemetry() {
  rte_telemetry_register_cmd("/dpgate/stats", [](const char* c, const char* p, rte_tel_data* d) {
    return telemetry_text(c, p, d, &dpgate::control::Runtime::stats_text);
  }, "dpgate per-port and per-worker counters, drops by reason");
  rte_telemetry_register_cmd("/dpgate/routes", [](const char* c, const char* p, rte_tel_data* d) {
    return telemetry_text(c, p, d, &dpgate::control::Runtime::routes_text);
  }, "dpgate forwarding table");
  rte_telemetry_register_cmd("/dpgate/neighbours", [](const char* c, const char* p, rte_tel_data* d) {
    return telemetry_text(c, p, d, &dpgate::control::Runtime::neighbours_text);
  }, "dpgate neighbour (ARP) table");
  rte_telemetry_register_cmd("/dpgate/rules", [](const char* c, const char* p, rte_tel_data* d) {
    return telemetry_text(c, p, d, &dpgate::control::Runtime::rules_telemetry_text);
  }, "dpgate running rules: generation, source, parse/compile time, rules per table");
}

uint64_t now_ms() { return rte_rdtsc() * 1000 / rte_get_tsc_hz(); }

int run(const dpgate::control::Config& config) {
  std::vector<unsigned> lcores;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) { lcores.push_back(lcore); }
  if (lcores.size() < config.workers) {
    log_event(RTE_LOG_ERR, "%s: workers = %u but the EAL gave %zu worker lcores (pass e.g. -l 0-%u)",
              config.path.c_str(), config.workers, lcores.size(), config.workers);
    return 1;
  }
  auto created = dpgate::control::Runtime::create(config);
  if (auto* err = std::get_if<std::string>(&created)) {
    log_event(RTE_LOG_ERR, "%s", err->c_str());
    return 1;
  }
  auto& runtime = *std::get<std::unique_ptr<dpgate::control::Runtime>>(created);
  using dpgate::control::ControlServer;
  auto control = ControlServer::listen_unix(config.control_socket);
  if (auto* err = std::get_if<std::string>(&control)) {
    log_event(RTE_LOG_ERR, "%s", err->c_str());
    return 1;
  }
  auto& ctl = *std::get<std::unique_ptr<ControlServer>>(control);
  dpgate::control::register_commands(ctl, runtime);
  std::unique_ptr<ControlServer> metrics;
  if (!config.metrics_listen.empty()) {
    auto m = ControlServer::listen_metrics(config.metrics_listen, [&] { return runtime.metrics_text(); });
    if (auto* err = std::get_if<std::string>(&m)) {
      log_event(RTE_LOG_ERR, "%s", err->c_str());
      return 1;
    }
    metrics = std::move(std::get<std::unique_ptr<ControlServer>>(m));
  }
  g_runtime = &runtime;
  if (config.telemetry) register_telemetry();
  if (config.pdump) {
    if (rte_pdump_init() != 0) {
      log_event(RTE_LOG_WARNING, "warning: packet capture (rte_pdump) unavailable: it needs the EAL's shared "
                                 "config (run without --no-shconf/--in-memory)");
    }
    for (const auto& port : config.ports) {
      if (auto problem = dpgate::control::capture_attach_problem(port); !problem.empty()) {
        log_event(RTE_LOG_WARNING, "warning: %s", problem.c_str());
      }
    }
  }
  for (size_t i = 0; i < runtime.workers().size(); ++i) {
    auto& w = *runtime.workers()[i];
    w.lcore_id = lcores[i];
    rte_eal_remote_launch(dpgate::dataplane::worker_main, &w, lcores[i]);
  }
  for (size_t i = 0; i < config.ports.size(); ++i) {
    const auto& port = runtime.router().ports[i];
    log_event(RTE_LOG_INFO, "port %s: %s, dpdk port %u, mac %s, mtu %u", config.ports[i].name.c_str(),
              config.ports[i].device.c_str(), port.port_id, dpgate::net::format_mac(port.mac).c_str(), port.mtu);
  }
  log_event(RTE_LOG_NOTICE, "running: %zu ports, %u workers, %zu routes", config.ports.size(), config.workers,
            runtime.router().fib.load()->route_count());
  log_event(RTE_LOG_INFO, "control socket %s%s%s", ctl.where().c_str(), metrics ? ", metrics http://" : "",
            metrics ? (metrics->where() + "/metrics").c_str() : "");
  while (!g_stop) {
    runtime.service(rte_rdtsc());
    ctl.poll(now_ms());
    if (metrics) metrics->poll(now_ms());
    if (g_reload) {
      g_reload = 0;
      if (config.rules_file.empty()) {
        log_event(RTE_LOG_WARNING, "SIGHUP: no rules file in the configuration");
      } else {
        log_event(RTE_LOG_INFO, "SIGHUP: re-reading %s", config.rules_file.c_str());
        runtime.reload_rules();  // logs the new generation, or why the running rules stay
      }
    }
    if (g_print_stats) {
      g_print_stats = 0;
      std::fputs(runtime.stats_text().c_str(), stdout);
      std::fflush(stdout);
    }
    usleep(1000);
  }
  runtime.router().stop.store(true);
  rte_eal_mp_wait_lcore();
  runtime.service(rte_rdtsc());  // the last LOG records the workers wrote
  log_event(RTE_LOG_NOTICE, "stopping; final counters:");
  std::fputs(runtime.stats_text().c_str(), stdout);
  std::fflush(stdout);
  if (config.pdump) rte_pdump_uninit();
  g_runtime = nullptr;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int dashdash = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      dashdash = i;
      break;
    }
  }
  AppArgs args;
  if (!parse_app_args(argc, argv, dashdash + 1, args)) return 2;

  // The configuration is checked before the EAL touches any device.
  auto loaded = dpgate::control::load_config_file(args.config);
  if (auto* err = std::get_if<dpgate::control::ConfigError>(&loaded)) {
    std::fprintf(stderr, "dpgate: %s\n", err->to_string().c_str());
    return 1;
  }
  const auto& config = std::get<dpgate::control::Config>(loaded);
  if (args.check) {
    std::printf("%s: OK (%zu ports, %zu routes, %zu neighbours, %u workers)\n", config.path.c_str(),
                config.ports.size(), config.routes.size(), config.neighbours.size(), config.workers);
    return 0;
  }

  std::signal(SIGINT, on_stop);
  std::signal(SIGTERM, on_stop);
  std::signal(SIGUSR1, on_stats);
  std::signal(SIGHUP, on_reload);
  if (rte_eal_init(dashdash, argv) < 0) {
    std::fprintf(stderr, "dpgate: cannot initialise the EAL (see the messages above)\n");
    return 1;
  }
  int rc = run(config);
  rte_eal_cleanup();
  return rc;
}
