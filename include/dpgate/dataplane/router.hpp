// What every worker shares: the ports' identities, the published forwarding
// table, the neighbour table, the mbuf pool and the worker->control ring.
// Built by the control thread before workers start. After that:
//   ports, pool, rings (log rings included), timing: immutable;
//   fib: an atomic pointer the control thread may republish (workers load it
//        once per burst; the old table is freed after workers quiesce);
//   neighbours: written by the control thread only, read lock-free (seqlock);
//   rules: like fib, reclaimed through rte_rcu_qsbr;
//   stop: set by the control thread, polled by workers.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "dpgate/lb/recent.hpp"
#include "dpgate/net/addr.hpp"
#include "dpgate/route/fib.hpp"
#include "dpgate/route/neighbour.hpp"

struct rte_mempool;
struct rte_rcu_qsbr;
struct rte_ring;

namespace dpgate::dataplane {

struct PublishedRules;

inline constexpr uint16_t kMaxPorts = 16;
inline constexpr uint16_t kMaxAddressesPerPort = 8;
inline constexpr uint16_t kMaxBurst = 64;
inline constexpr uint16_t kMaxWorkers = 32;

struct PortInfo {
  char name[16] = {};    // the config's name: what -i/-o match
  uint16_t port_id = 0;  // DPDK's port id
  uint16_t mtu = 1500;
  net::MacAddr mac;
  uint8_t address_count = 0;
  std::array<net::Ipv4Prefix, kMaxAddressesPerPort> addresses{};

  uint32_t primary_address() const { return addresses[0].addr; }
  bool owns(uint32_t ip) const {
    for (uint8_t i = 0; i < address_count; ++i) {
      if (addresses[i].addr == ip) return true;
    }
    return false;
  }
  bool on_link(uint32_t ip) const {
    for (uint8_t i = 0; i < address_count; ++i) {
      if (addresses[i].contains(ip)) return true;
    }
    return false;
  }
  // The address to speak from towards `peer`: one on the peer's subnet, else the primary.
  uint32_t source_for(uint32_t peer) const {
    for (uint8_t i = 0; i < address_count; ++i) {
      if (addresses[i].contains(peer)) return addresses[i].addr;
    }
    return primary_address();
  }
};

// Worker-to-worker control messages (DESIGN §3 point 3): the owner of a
// destination-translated flow asks every other worker to keep a redirect stub
// for the flow's reply tuple, and to drop it when the flow ends. One SPSC
// ring per (sender, receiver) pair.
struct WorkerMessage {
  enum class Type : uint8_t { kAddRedirect, kRemoveRedirect } type = Type::kAddRedirect;
  uint8_t owner = 0;
  uint16_t status = 0;
  uint32_t timeout_s = 0;
  net::FiveTuple tuple;
  uint64_t pad = 0;
};
static_assert(sizeof(WorkerMessage) == 56);

struct Router {
  std::array<PortInfo, kMaxPorts> ports{};
  uint16_t port_count = 0;
  uint16_t burst = 32;

  std::atomic<const route::Fib*> fib{nullptr};
  // The running rules (null: none loaded). Workers load it once per burst and
  // report a quiescent state to `qsbr` (thread id = worker queue) after each
  // poll, so the control thread knows when an old generation is unreachable.
  std::atomic<const PublishedRules*> rules{nullptr};
  rte_rcu_qsbr* qsbr = nullptr;

  // Stateful forwarding (only used while rules are loaded).
  uint16_t worker_count = 1;
  lb::RecentTable* recent = nullptr;  // shared by all workers, lock-free
  // handover[from][to]: mbufs a worker passes to their flow's owner;
  // messages[from][to]: WorkerMessage elements. SPSC rings, n x n.
  std::array<std::array<rte_ring*, kMaxWorkers>, kMaxWorkers> handover{};
  std::array<std::array<rte_ring*, kMaxWorkers>, kMaxWorkers> messages{};
  // Addresses that count as LOCAL for -m addrtype besides the ports' own
  // (node IPs, VIPs), host order. Immutable.
  std::array<uint32_t, 64> extra_local{};
  uint16_t extra_local_count = 0;

  // The connected networks' broadcast addresses: never a valid source
  // (RFC 1812 5.3.7). Host order; immutable.
  std::array<uint32_t, kMaxPorts * kMaxAddressesPerPort> directed_broadcasts{};
  uint16_t directed_broadcast_count = 0;
  // Host bits every one of them has set: those of the longest prefix (a /24's
  // broadcast ends in 8 one bits, a /30's in 2). An address without all of
  // them set is none of the list: most sources leave after one test.
  uint32_t directed_broadcast_ones = 0xffffffffu;
  void add_directed_broadcast(uint32_t addr, uint32_t host_mask) {
    directed_broadcasts[directed_broadcast_count++] = addr | host_mask;
    directed_broadcast_ones &= host_mask;
  }
  bool is_directed_broadcast(uint32_t ip) const {
    if ((ip & directed_broadcast_ones) != directed_broadcast_ones) return false;
    for (uint16_t i = 0; i < directed_broadcast_count; ++i) {
      if (directed_broadcasts[i] == ip) return true;
    }
    return false;
  }

  // Whether `ip` (host order) is one of the router's addresses.
  bool is_local(uint32_t ip) const {
    for (uint16_t p = 0; p < port_count; ++p) {
      if (ports[p].owns(ip)) return true;
    }
    for (uint16_t i = 0; i < extra_local_count; ++i) {
      if (extra_local[i] == ip) return true;
    }
    return false;
  }
  route::NeighbourTable* neighbours = nullptr;
  rte_ring* learn_ring = nullptr;  // NeighbourLearn elements; workers produce, control consumes
  // LOG target records (LogRecord elements): log_rings[q] is written by
  // worker q only and read by the control thread only (SPSC rings).
  std::array<rte_ring*, kMaxWorkers> log_rings{};
  rte_mempool* pool = nullptr;     // for packets the router originates (ICMP errors, ARP)

  // Timing, in TSC cycles.
  uint64_t tsc_hz = 0;
  uint64_t icmp_token_cycles = 0;  // cost of one ICMP error; 0 = never send
  uint64_t icmp_bucket_cycles = 0; // bucket depth (burst x cost)
  uint64_t log_token_cycles = 0;   // cost of one LOG record; 0 = LOG rules write none
  uint64_t log_bucket_cycles = 0;  // bucket depth (burst x cost)
  uint64_t arp_retry_cycles = 0;
  uint64_t arp_resolve_timeout_cycles = 0;
  uint32_t arp_queue = 64;
  uint32_t idle_sleep_us = 0;

  std::atomic<bool> stop{false};
};

}  // namespace dpgate::dataplane
