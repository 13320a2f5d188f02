// The daemon's configuration: loaded from a libconfig file by the control
// thread before the EAL starts, validated whole, then read-only. Plain structs:
// nothing here exposes libconfig, so the data plane may include it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "dpgate/conntrack/timeouts.hpp"
#include "dpgate/net/addr.hpp"

namespace dpgate::control {

struct PortConfig {
  std::string name;    // the operator's name for the port ("lan", "wan")
  std::string device;  // a PCI address (0000:01:00.0) or a vdev spec (net_af_packet0,iface=veth0)
  std::vector<net::Ipv4Prefix> addresses;  // first is the primary address
  uint16_t mtu = 1500;
  std::optional<net::MacAddr> mac;  // overrides the device's MAC
  bool promiscuous = false;
};

struct RouteConfig {
  net::Ipv4Prefix prefix;
  uint32_t gateway = 0;  // host order; 0 = on-link
  uint16_t port = 0;     // index into Config::ports
};

struct NeighbourConfig {
  uint32_t address = 0;  // host order
  net::MacAddr mac;
  uint16_t port = 0;
};

struct Config {
  std::string path;
  std::vector<PortConfig> ports;
  uint32_t workers = 1;
  uint16_t burst = 32;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  uint32_t mbuf_pool_size = 16383;
  uint32_t mbuf_cache_size = 256;
  uint32_t idle_sleep_us = 0;  // 0: busy-poll; else a worker sleeps this long when idle
  std::vector<RouteConfig> routes;
  std::vector<NeighbourConfig> neighbours;
  // ICMP errors the router originates (Time Exceeded, Unreachable), per worker.
  uint32_t icmp_rate = 1000;  // per second
  uint32_t icmp_burst = 50;
  // iptables LOG target records, per worker: a token bucket of `burst`
  // records refilled at `rate` per second (0: LOG rules log nothing), and a
  // ring of `ring_size` records the control thread drains.
  uint32_t log_rate = 1000;
  uint32_t log_burst = 200;
  uint32_t log_ring_size = 1024;
  // ARP.
  uint32_t arp_table_size = 4096;
  uint32_t arp_queue = 64;              // packets per worker waiting for resolution
  uint32_t arp_reachable_ms = 300000;   // then STALE: still used, refreshed by a new request
  uint32_t arp_stale_ms = 10000;        // STALE this long without a reply: deleted
  uint32_t arp_retry_ms = 1000;         // between requests for one address
  uint32_t arp_resolve_timeout_ms = 3000;  // queued packets are dropped after this
  std::string rules_file;               // iptables-restore text, optional
  // Connection tracking (used while rules are loaded).
  uint32_t conntrack_max_flows = 1 << 20;  // all workers together; each gets an equal share
  conntrack::Timeouts conntrack_timeouts;  // netfilter's defaults
  bool conntrack_accounting = false;       // per-flow counters (nf_conntrack_acct, off by default)
  uint32_t recent_size = 65536;            // xt_recent addresses, all lists together
  std::vector<uint32_t> local_addresses;   // also LOCAL for -m addrtype (node IPs, VIPs), host order
  // Operations.
  std::string control_socket = "/run/dpgate/dpgate.sock";  // dpgatectl talks here (mode 0600)
  std::string metrics_listen = "127.0.0.1:9469";          // Prometheus text; "" disables
  bool telemetry = true;                                  // /dpgate/* DPDK telemetry commands
  bool pdump = true;                                      // rte_pdump for dpdk-dumpcap
};

// A configuration mistake: where and why. to_string() is what the user reads:
// "conf/x.conf:12: ports.[0].mtu: must be between 68 and 9000".
struct ConfigError {
  std::string file;
  int line = 0;  // 0 when unknown (e.g. a missing key reported at its group)
  std::string key;
  std::string reason;
  std::string to_string() const;
};

// Control thread, before the EAL starts.
std::variant<Config, ConfigError> load_config_file(const std::string& path);
std::variant<Config, ConfigError> load_config_text(const std::string& text,
                                                   const std::string& name = "<text>");

// Why a secondary process (dpdk-dumpcap) cannot attach to this port, or "".
// DPDK 22.11's net_pcap keeps only the first 63 characters of its arguments
// for secondary processes, which re-open the files from that copy: a longer
// "rx_pcap=...,tx_pcap=..." reaches them cut, and their probe fails.
std::string capture_attach_problem(const PortConfig& port);

}  // namespace dpgate::control
