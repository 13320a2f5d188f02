#include "dpgate/control/config.hpp"

#include "dpgate/net/packet.hpp"

#include <libconfig.h++>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <set>
#include <string_view>

namespace dpgate::control {

namespace {

// Internal: thrown inside the loader, returned as a value at its boundary.
struct Failure {
  ConfigError error;
};

[[noreturn]] void fail(const libconfig::Setting& s, std::string key, std::string reason) {
  const char* file = s.getSourceFile();
  throw Failure{{file ? file : "", static_cast<int>(s.getSourceLine()), std::move(key),
                 std::move(reason)}};
}

std::string path_of(const libconfig::Setting& s) {
  std::string p = s.getPath();
  return p.empty() ? "<root>" : p;
}

std::string child_path(const libconfig::Setting& parent, std::string_view name) {
  std::string p = parent.getPath();
  return p.empty() ? std::string(name) : p + "." + std::string(name);
}

// Rejects keys a group does not know: a typo must not silently fall back to a default.
void only_keys(const libconfig::Setting& group, std::initializer_list<std::string_view> known) {
  for (int i = 0; i < group.getLength(); ++i) {
    const libconfig::Setting& s = group[i];
    const std::string_view name = s.getName() ? s.getName() : "";
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(s, path_of(s), "unknown key (known keys: " + list + ")");
    }
  }
}

const libconfig::Setting& require(const libconfig::Setting& group, const char* name) {
  if (!group.exists(name)) fail(group, child_path(group, name), "missing required key");
  return group[name];
}

std::string get_string(const libconfig::Setting& s) {
  if (s.getType() != libconfig::Setting::TypeString) fail(s, path_of(s), "must be a string");
  return s.c_str();
}

template <typename T>
T get_uint(const libconfig::Setting& s, long long min, long long max) {
  if (s.getType() != libconfig::Setting::TypeInt && s.getType() != libconfig::Setting::TypeInt64) {
    fail(s, path_of(s), "must be an integer");
  }
  const long long v = s.getType() == libconfig::Setting::TypeInt ? static_cast<long long>(static_cast<int>(s))
                                                                  : static_cast<long long>(s);
  if (v < min || v > max) {
    fail(s, path_of(s), "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return static_cast<T>(v);
}

template <typename T>
void optional_uint(const libconfig::Setting& group, const char* name, T& out, long long min,
                   long long max) {
  if (group.exists(name)) out = get_uint<T>(group[name], min, max);
}

net::Ipv4Prefix get_prefix(const libconfig::Setting& s) {
  auto p = net::parse_ipv4_prefix(get_string(s));
  if (!p) fail(s, path_of(s), "expected an IPv4 prefix like 198.18.0.1/24, found '" + get_string(s) + "'");
  return *p;
}

uint32_t get_ipv4(const libconfig::Setting& s) {
  auto a = net::parse_ipv4(get_string(s));
  if (!a) fail(s, path_of(s), "expected an IPv4 address, found '" + get_string(s) + "'");
  return *a;
}

net::MacAddr get_mac(const libconfig::Setting& s) {
  auto m = net::parse_mac(get_string(s));
  if (!m) fail(s, path_of(s), "expected a MAC address like 02:00:00:00:00:01, found '" + get_string(s) + "'");
  return *m;
}

void expect_type(const libconfig::Setting& s, libconfig::Setting::Type type, const char* what) {
  if (s.getType() != type) fail(s, path_of(s), std::string("must be ") + what);
}

uint16_t port_index(const Config& cfg, const libconfig::Setting& s) {
  const std::string name = get_string(s);
  for (size_t i = 0; i < cfg.ports.size(); ++i) {
    if (cfg.ports[i].name == name) return static_cast<uint16_t>(i);
  }
  fail(s, path_of(s), "no port named '" + name + "'");
}

bool looks_like_pci(std::string_view d) {
  // DDDD:BB:DD.F or BB:DD.F
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  const size_t dot = d.rfind('.');
  if (dot == std::string_view::npos || dot + 2 != d.size()) return false;
  return std::all_of(d.begin(), d.begin() + static_cast<long>(dot),
                     [&](char c) { return hex(c) || c == ':'; }) &&
         std::count(d.begin(), d.end(), ':') >= 1;
}

void load_ports(const libconfig::Setting& root, Config& cfg) {
  const libconfig::Setting& ports = require(root, "ports");
  if (!ports.isList() && !ports.isArray()) fail(ports, "ports", "must be a list of port groups ( {...}, ... )");
  if (ports.getLength() == 0) fail(ports, "ports", "at least one port is required");
  if (ports.getLength() > 16) fail(ports, "ports", "at most 16 ports are supported");
  std::set<std::string> names;
  std::set<uint32_t> addresses;
  for (int i = 0; i < ports.getLength(); ++i) {
    const libconfig::Setting& p = ports[i];
    expect_type(p, libconfig::Setting::TypeGroup, "a group { name = ...; device = ...; }");
    only_keys(p, {"name", "device", "addresses", "mtu", "mac", "promiscuous"});
    PortConfig port;
    port.name = get_string(require(p, "name"));
    if (port.name.empty() || port.name.size() > 15) fail(p["name"], path_of(p["name"]), "must be 1 to 15 characters");
    if (!names.insert(port.name).second) fail(p["name"], path_of(p["name"]), "duplicate port name '" + port.name + "'");
    port.device = get_string(require(p, "device"));
    if (!looks_like_pci(port.device) && port.device.rfind("net_", 0) != 0) {
      fail(p["device"], path_of(p["device"]),
           "expected a PCI address (0000:01:00.0) or a vdev spec (net_af_packet0,iface=eth1), found '" +
               port.device + "'");
    }
    const libconfig::Setting& addrs = require(p, "addresses");
    if (!addrs.isArray() && !addrs.isList()) fail(addrs, path_of(addrs), "must be an array of prefixes [\"198.18.0.1/24\"]");
    if (addrs.getLength() > 8) fail(addrs, path_of(addrs), "at most 8 addresses per port");
    for (int a = 0; a < addrs.getLength(); ++a) {
      net::Ipv4Prefix prefix = get_prefix(addrs[a]);
      const uint32_t host_bits = prefix.addr & ~prefix.mask();
      if (prefix.len == 0 || net::is_martian_source(prefix.addr) ||
          (prefix.len < 31 && (host_bits == 0 || host_bits == ~prefix.mask()))) {
        fail(addrs[a], path_of(addrs[a]), "is not a usable host address of its prefix");
      }
      if (!addresses.insert(prefix.addr).second) fail(addrs[a], path_of(addrs[a]), "address is used twice");
      port.addresses.push_back(prefix);
    }
    optional_uint(p, "mtu", port.mtu, 68, 9000);
    if (p.exists("mac")) port.mac = get_mac(p["mac"]);
    if (p.exists("promiscuous")) {
      expect_type(p["promiscuous"], libconfig::Setting::TypeBoolean, "true or false");
      port.promiscuous = p["promiscuous"];
    }
    cfg.ports.push_back(std::move(port));
  }
}

void load_routes(const libconfig::Setting& root, Config& cfg) {
  if (!root.exists("routes")) return;
  const libconfig::Setting& routes = root["routes"];
  if (!routes.isList()) fail(routes, "routes", "must be a list of route groups ( {...}, ... )");
  for (int i = 0; i < routes.getLength(); ++i) {
    const libconfig::Setting& r = routes[i];
    expect_type(r, libconfig::Setting::TypeGroup, "a group { prefix = ...; port = ...; }");
    only_keys(r, {"prefix", "gateway", "port"});
    RouteConfig route;
    route.prefix = get_prefix(require(r, "prefix"));
    if ((route.prefix.addr & ~route.prefix.mask()) != 0) {
      fail(r["prefix"], path_of(r["prefix"]), "has host bits set (did you mean " +
           net::format_ipv4(route.prefix.addr & route.prefix.mask()) + "/" + std::to_string(route.prefix.len) + "?)");
    }
    if (r.exists("gateway")) route.gateway = get_ipv4(r["gateway"]);
    route.port = port_index(cfg, require(r, "port"));
    if (route.gateway != 0) {
      const auto& addrs = cfg.ports[route.port].addresses;
      if (std::none_of(addrs.begin(), addrs.end(), [&](const net::Ipv4Prefix& a) { return a.contains(route.gateway); })) {
        fail(r["gateway"], path_of(r["gateway"]), "gateway " + net::format_ipv4(route.gateway) +
             " is not on a connected network of port '" + cfg.ports[route.port].name + "'");
      }
    }
    cfg.routes.push_back(route);
  }
}

void load_neighbours(const libconfig::Setting& root, Config& cfg) {
  if (!root.exists("neighbours")) return;
  const libconfig::Setting& list = root["neighbours"];
  if (!list.isList()) fail(list, "neighbours", "must be a list of groups ( {...}, ... )");
  for (int i = 0; i < list.getLength(); ++i) {
    const libconfig::Setting& n = list[i];
    expect_type(n, libconfig::Setting::TypeGroup, "a group { address = ...; mac = ...; port = ...; }");
    only_keys(n, {"address", "mac", "port"});
    NeighbourConfig neigh;
    neigh.address = get_ipv4(require(n, "address"));
    neigh.mac = get_mac(require(n, "mac"));
    if (neigh.mac.is_multicast()) fail(n["mac"], path_of(n["mac"]), "must be a unicast MAC");
    neigh.port = port_index(cfg, require(n, "port"));
    cfg.neighbours.push_back(neigh);
  }
}

Config load(const libconfig::Config& lc, const std::string& path) {
  Config cfg;
  cfg.path = path;
  const libconfig::Setting& root = lc.getRoot();
  only_keys(root, {"workers", "burst", "rx_descriptors", "tx_descriptors", "mbuf_pool_size",
                   "mbuf_cache_size", "idle_sleep_us", "ports", "routes", "neighbours", "icmp",
                   "log", "arp", "rules", "control", "conntrack", "local_addresses", "recent"});
  optional_uint(root, "workers", cfg.workers, 1, 64);
  optional_uint(root, "burst", cfg.burst, 1, 64);
  optional_uint(root, "rx_descriptors", cfg.rx_descriptors, 64, 16384);
  optional_uint(root, "tx_descriptors", cfg.tx_descriptors, 64, 16384);
  optional_uint(root, "mbuf_pool_size", cfg.mbuf_pool_size, 1023, 16777215);
  optional_uint(root, "mbuf_cache_size", cfg.mbuf_cache_size, 0, 512);
  optional_uint(root, "idle_sleep_us", cfg.idle_sleep_us, 0, 100000);
  load_ports(root, cfg);
  load_routes(root, cfg);
  load_neighbours(root, cfg);
  if (root.exists("icmp")) {
    const libconfig::Setting& g = root["icmp"];
    expect_type(g, libconfig::Setting::TypeGroup, "a group { rate = ...; burst = ...; }");
    only_keys(g, {"rate", "burst"});
    optional_uint(g, "rate", cfg.icmp_rate, 0, 1000000);
    optional_uint(g, "burst", cfg.icmp_burst, 1, 100000);
  }
  if (root.exists("log")) {
    const libconfig::Setting& g = root["log"];
    expect_type(g, libconfig::Setting::TypeGroup, "a group { rate = ...; burst = ...; ring_size = ...; }");
    only_keys(g, {"rate", "burst", "ring_size"});
    optional_uint(g, "rate", cfg.log_rate, 0, 1000000);
    optional_uint(g, "burst", cfg.log_burst, 1, 1000000);
    optional_uint(g, "ring_size", cfg.log_ring_size, 64, 1 << 20);
  }
  if (root.exists("arp")) {
    const libconfig::Setting& g = root["arp"];
    expect_type(g, libconfig::Setting::TypeGroup, "a group { table_size = ...; ... }");
    only_keys(g, {"table_size", "queue", "reachable_ms", "stale_ms", "retry_ms", "resolve_timeout_ms"});
    optional_uint(g, "table_size", cfg.arp_table_size, 16, 1 << 20);
    optional_uint(g, "queue", cfg.arp_queue, 1, 4096);
    optional_uint(g, "reachable_ms", cfg.arp_reachable_ms, 1000, 86400000);
    optional_uint(g, "stale_ms", cfg.arp_stale_ms, 100, 86400000);
    optional_uint(g, "retry_ms", cfg.arp_retry_ms, 10, 60000);
    optional_uint(g, "resolve_timeout_ms", cfg.arp_resolve_timeout_ms, 10, 60000);
  }
  if (root.exists("rules")) cfg.rules_file = get_string(root["rules"]);
  if (root.exists("conntrack")) {
    const libconfig::Setting& g = root["conntrack"];
    expect_type(g, libconfig::Setting::TypeGroup, "a group { max_flows = ...; timeouts = { ... }; }");
    only_keys(g, {"max_flows", "tcp_loose", "accounting", "timeouts"});
    optional_uint(g, "max_flows", cfg.conntrack_max_flows, 1024, 1 << 26);
    if (g.exists("tcp_loose")) {
      expect_type(g["tcp_loose"], libconfig::Setting::TypeBoolean, "true or false");
      cfg.conntrack_timeouts.tcp_loose = g["tcp_loose"];
    }
    if (g.exists("accounting")) {
      expect_type(g["accounting"], libconfig::Setting::TypeBoolean, "true or false");
      cfg.conntrack_accounting = g["accounting"];
    }
    if (g.exists("timeouts")) {
      const libconfig::Setting& t = g["timeouts"];
      expect_type(t, libconfig::Setting::TypeGroup, "a group of seconds { tcp_established = 432000; ... }");
      auto& to = cfg.conntrack_timeouts;
      const std::pair<const char*, uint32_t*> keys[] = {
          {"tcp_syn_sent", &to.tcp_syn_sent},     {"tcp_syn_recv", &to.tcp_syn_recv},
          {"tcp_established", &to.tcp_established}, {"tcp_fin_wait", &to.tcp_fin_wait},
          {"tcp_close_wait", &to.tcp_close_wait}, {"tcp_last_ack", &to.tcp_last_ack},
          {"tcp_time_wait", &to.tcp_time_wait},   {"tcp_close", &to.tcp_close},
          {"tcp_unacknowledged", &to.tcp_unacknowledged}, {"udp", &to.udp},
          {"udp_stream", &to.udp_stream},         {"icmp", &to.icmp},
          {"generic", &to.generic}};
      for (int k = 0; k < t.getLength(); ++k) {
        const std::string name = t[k].getName();
        auto it = std::find_if(std::begin(keys), std::end(keys), [&](const auto& kv) { return name == kv.first; });
        if (it == std::end(keys)) fail(t[k], path_of(t[k]), "unknown timeout");
        *it->second = get_uint<uint32_t>(t[k], 1, 30 * 86400);
      }
    }
  }
  if (root.exists("recent")) {
    const libconfig::Setting& g = root["recent"];
    expect_type(g, libconfig::Setting::TypeGroup, "a group { size = ...; }");
    only_keys(g, {"size"});
    optional_uint(g, "size", cfg.recent_size, 64, 1 << 24);
  }
  if (root.exists("local_addresses")) {
    const libconfig::Setting& list = root["local_addresses"];
    if (!list.isArray() && !list.isList()) fail(list, "local_addresses", "must be an array of addresses");
    if (list.getLength() > 64) fail(list, "local_addresses", "at most 64 addresses");
    for (int k = 0; k < list.getLength(); ++k) cfg.local_addresses.push_back(get_ipv4(list[k]));
  }
  if (root.exists("control")) {
    const libconfig::Setting& g = root["control"];
    expect_type(g, libconfig::Setting::TypeGroup, "a group { socket = ...; metrics = ...; }");
    only_keys(g, {"socket", "metrics", "telemetry", "pdump"});
    if (g.exists("socket")) {
      cfg.control_socket = get_string(g["socket"]);
      if (cfg.control_socket.empty() || cfg.control_socket.size() > 100 || cfg.control_socket[0] != '/') {
        fail(g["socket"], path_of(g["socket"]), "must be an absolute path of at most 100 characters");
      }
    }
    if (g.exists("metrics")) {
      cfg.metrics_listen = get_string(g["metrics"]);
      const size_t colon = cfg.metrics_listen.rfind(':');
      if (!cfg.metrics_listen.empty() &&
          (colon == std::string::npos || !net::parse_ipv4(cfg.metrics_listen.substr(0, colon)))) {
        fail(g["metrics"], path_of(g["metrics"]), "expected IPV4:PORT (e.g. 127.0.0.1:9469) or \"\" to disable");
      }
    }
    for (const char* flag : {"telemetry", "pdump"}) {
      if (!g.exists(flag)) continue;
      expect_type(g[flag], libconfig::Setting::TypeBoolean, "true or false");
      (std::string(flag) == "telemetry" ? cfg.telemetry : cfg.pdump) = g[flag];
    }
  }
  const uint32_t min_pool = static_cast<uint32_t>(cfg.ports.size()) * cfg.workers *
                            (cfg.rx_descriptors + cfg.tx_descriptors + cfg.burst) + cfg.workers * cfg.arp_queue;
  if (cfg.mbuf_pool_size < min_pool) {
    const libconfig::Setting& at = root.exists("mbuf_pool_size") ? root["mbuf_pool_size"] : root;
    fail(at, "mbuf_pool_size", "must be at least " + std::to_string(min_pool) +
         " (ports x workers x (rx_descriptors + tx_descriptors + burst) + workers x arp.queue)");
  }
  return cfg;
}

template <typename Read>
std::variant<Config, ConfigError> load_with(Read read, const std::string& name) {
  libconfig::Config lc;
  try {
    read(lc);
    return load(lc, name);
  } catch (const libconfig::FileIOException&) {
    return ConfigError{name, 0, "", "cannot read the file"};
  } catch (const libconfig::ParseException& e) {
    return ConfigError{e.getFile() ? e.getFile() : name, e.getLine(), "", std::string("syntax error: ") + e.getError()};
  } catch (const Failure& f) {
    ConfigError err = f.error;
    if (err.file.empty()) err.file = name;
    return err;
  } catch (const libconfig::SettingException& e) {
    return ConfigError{name, 0, e.getPath(), e.what()};
  }
}

}  // namespace

std::string ConfigError::to_string() const {
  std::string s = file;
  if (line > 0) s += ":" + std::to_string(line);
  s += ": ";
  if (!key.empty()) s += key + ": ";
  return s + reason;
}

std::variant<Config, ConfigError> load_config_file(const std::string& path) {
  return load_with([&](libconfig::Config& lc) { lc.readFile(path.c_str()); }, path);
}

std::variant<Config, ConfigError> load_config_text(const std::string& text, const std::string& name) {
  return load_with([&](libconfig::Config& lc) { lc.readString(text); }, name);
}

std::string capture_attach_problem(const PortConfig& port) {
  constexpr size_t kPcapArgsKept = 63;  // net_pcap's ETH_PCAP_ARG_MAXLEN, less its NUL
  const std::string_view device = port.device;
  const size_t comma = device.find(',');
  if (comma == std::string_view::npos) return "";
  const std::string_view driver = device.substr(0, comma);
  if (driver.rfind("net_pcap", 0) != 0 && driver.rfind("eth_pcap", 0) != 0) return "";
  const std::string_view args = device.substr(comma + 1);
  if (args.size() <= kPcapArgsKept) return "";
  return "port " + port.name + ": net_pcap passes secondary processes (dpdk-dumpcap) only the first " +
         std::to_string(kPcapArgsKept) + " characters of its arguments, and these have " +
         std::to_string(args.size()) + ": capture cannot attach; shorten the pcap paths (relative to "
         "dpgate's working directory)";
}

}  // namespace dpgate::control
