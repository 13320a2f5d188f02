// A worker lcore: polls RX queue `queue` of every port, owns TX queue `queue`
// of every port, and runs the forwarding pipeline on each burst. One Worker
// per lcore, written only by that lcore; the control thread reads its
// counters (relaxed atomics written by plain load+store, never RMW).
#pragma once

#include <rte_common.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "dpgate/conntrack/port_allocator.hpp"
#include "dpgate/dataplane/counter.hpp"
#include "dpgate/conntrack/table.hpp"
#include "dpgate/dataplane/match_state.hpp"
#include "dpgate/dataplane/router.hpp"
#include "dpgate/net/drop_reason.hpp"
#include "dpgate/route/neighbour.hpp"

struct rte_mbuf;

namespace dpgate::dataplane {


struct PortCounters {
  Counter rx_packets, rx_bytes, tx_packets, tx_bytes;
};

// A token bucket counted in TSC cycles: each take() costs `token` cycles of
// credit, and credit refills with time up to `depth`. `token` 0: never.
// One owner (its worker); no atomics.
struct CycleBucket {
  uint64_t credit = 0;
  uint64_t last_tsc = 0;
  bool take(uint64_t now, uint64_t token, uint64_t depth) {
    if (token == 0) return false;
    credit = std::min(depth, credit + (now - last_tsc));
    last_tsc = now;
    if (credit < token) return false;
    credit -= token;
    return true;
  }
};

struct WorkerCounters {
  std::array<PortCounters, kMaxPorts> port;
  Counter forwarded;
  Counter local_delivered;   // addressed to the router and handled (echo, ARP)
  Counter arp_replies_sent;
  Counter arp_requests_sent;
  Counter icmp_errors_sent;
  Counter icmp_rate_limited;
  Counter learn_ring_full;
  Counter handed_over;      // packets passed to their flow's owner worker
  Counter taken_over;       // packets received from other workers
  Counter ct_invalid;       // packets conntrack classified INVALID (they still meet the rules)
  Counter redirects_sent;   // redirect-stub messages sent to other workers
  Counter redirects_lost;   // ... that a full message ring refused (those replies meet no stub)
  Counter log_records;      // LOG records put on the worker's log ring
  Counter log_suppressed;   // LOG records the rate limit held back (or past kMaxLogs in one hook)
  Counter log_ring_full;    // LOG records lost because the control thread had not drained the ring
  std::array<Counter, static_cast<size_t>(net::DropReason::kCount)> drops;

  void drop(net::DropReason r, uint64_t n = 1) { drops[static_cast<size_t>(r)].add(n); }
};

// A packet waiting for its next hop's MAC.
struct PendingPacket {
  rte_mbuf* mbuf = nullptr;
  uint32_t next_hop = 0;  // host order
  uint16_t port = 0;
  uint64_t deadline = 0;  // TSC
};

// When this worker last asked for an address (rate-limits ARP requests).
struct ArpRequestSlot {
  uint32_t ip = 0;
  uint16_t port = 0;
  uint64_t last_tsc = 0;
};

struct TxBuffer {
  static constexpr uint16_t kSize = 2 * kMaxBurst;
  uint16_t count = 0;
  uint64_t bytes = 0;  // of pkts[0..count), summed as they are queued
  rte_mbuf* pkts[kSize];
};

// A question about the worker's flows (`dpgatectl conntrack`). The table has
// one writer, so the control thread never walks it: it posts a request here
// (state 1, release), the worker answers between bursts (state 2, release),
// and the control thread reads the answer and sets state 0. One page of at
// most kFlowPage table slots per request; `flows` is reserved at setup.
struct FlowRequest {
  enum class Op : uint8_t { kList, kDelete, kFlush };
  static constexpr uint32_t kFlowPage = 4096;
  std::atomic<uint8_t> state{0};
  Op op = Op::kList;
  conntrack::FlowFilter filter;
  uint32_t cursor = 0;
  // The answer.
  uint32_t next_cursor = 0;
  bool done = false;
  uint32_t matched = 0;
  std::vector<conntrack::FlowInfo> flows;
};

// The neighbour send() looked up last: a worker's packets mostly share a
// next hop (the gateway), so one lookup serves every packet to it until the
// neighbour table changes (NeighbourTable::generation()).
struct NeighbourCache {
  uint64_t generation = 0;
  uint16_t port = 0xffff;  // none looked up yet
  uint32_t ip = 0;
  std::optional<route::NeighbourState> state;  // none: not resolved
  uint8_t l2[12] = {};  // its MAC, then the port's: the frame's first 12 bytes
};

struct alignas(RTE_CACHE_LINE_SIZE) Worker {
  uint16_t queue = 0;  // the RX/TX queue index this worker owns on every port
  unsigned lcore_id = 0;
  Router* router = nullptr;

  std::array<TxBuffer, kMaxPorts> tx;
  std::vector<PendingPacket> pending;  // capacity router->arp_queue, reserved at setup
  std::array<ArpRequestSlot, 64> arp_requests{};
  CycleBucket icmp_bucket;  // ICMP errors the worker may send
  CycleBucket log_bucket;   // LOG records it may write
  uint64_t idle_polls = 0;
  NeighbourCache neighbour;

  // Stateful forwarding: this worker's flows, its NAT port slice, and the
  // state of stateful matches. Created at setup; used only by this worker.
  std::unique_ptr<conntrack::Table> flows;
  std::unique_ptr<conntrack::PortAllocator> nat_ports;  // SNAT: this worker's slice of the ports
  // Any port: DNAT's, and SNAT's when the slice has none free (replies of
  // both reach this worker through stubs).
  std::unique_ptr<conntrack::PortAllocator> any_ports;
  std::unique_ptr<WorkerMatchState> match_state;
  // What rule evaluation reads, refilled field by field for each hook a
  // packet runs (a fresh rules::Packet would be zeroed first: ~200 bytes).
  rules::Packet rule_packet;
  rules::HookResult hook_result;  // the same for what a hook decided

  FlowRequest flow_request;

  alignas(RTE_CACHE_LINE_SIZE) WorkerCounters counters;

  Worker(Router& r, uint16_t queue_index, unsigned lcore, const conntrack::TableConfig& flow_config);
};

// One iteration of the worker loop: receive a burst from every port, run the
// pipeline, retry packets waiting for ARP, flush TX. Returns packets received.
// The owning lcore only (tests call it from their own thread).
uint32_t worker_poll(Worker& w);

// Runs the pipeline on a burst received on `in_port` (an index into
// router.ports). Takes ownership of the mbufs. The owning lcore only.
void worker_process_burst(Worker& w, uint16_t in_port, rte_mbuf** pkts, uint16_t n);

// Transmits everything buffered. The owning lcore only.
void worker_flush(Worker& w);

// Frees packets still waiting for ARP (at shutdown). The owning lcore, or the
// control thread after the worker has stopped.
void worker_drain(Worker& w);

// rte_eal_remote_launch entry point: loops worker_poll until router.stop.
int worker_main(void* worker);

}  // namespace dpgate::dataplane
