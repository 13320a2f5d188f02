// The forwarding pipeline. A burst's path, top to bottom:
//   receive_and_parse -> track (conntrack bulk lookup, steering to the owner)
//   -> prerouting (raw, mangle, nat: DNAT) -> route (bulk LPM)
//   -> decide (INPUT or FORWARD filter, POSTROUTING nat: SNAT, confirm;
//      local delivery, ICMP errors) -> route_originated. The last two hand
// each packet they send to send() (neighbour, L2, TX buffer) as they go.
// Each stage runs over the whole burst. Without rules loaded, track and
// prerouting are skipped and dpgate is a plain router. No locks, no
// allocation, no syscalls: mbufs come from DPDK pools, everything else is
// preallocated in the Worker; other workers are reached through SPSC rings.
#include "dpgate/dataplane/worker.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "arp.hpp"
#include "dpgate/conntrack/view.hpp"
#include "dpgate/dataplane/nat.hpp"
#include "dpgate/dataplane/packet_log.hpp"
#include "dpgate/dataplane/published_rules.hpp"
#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"
#include "firewall.hpp"
#include "icmp.hpp"

namespace dpgate::dataplane {

namespace {

using net::DropReason;

constexpr unsigned kPrefetchAhead = 3;
constexpr uint64_t kIdlePollsBeforeSleep = 64;
constexpr unsigned kMaxMessagesPerDrain = 256;  // per peer: bounds one drain's work

// Storage for one T per packet of a burst, not initialised: PacketMeta, CtView
// and FiveTuple have default member initialisers, and constructing kMaxBurst
// of each on every burst zeroed 14 KB - more work than routing the packets.
// Each stage writes a packet's slot before any later stage reads it (parse
// fills meta; track fills ct, and orig/reply of new flows; a known flow's
// ct only in part, completed by the first hook that evaluates rules for it).
template <class T, size_t N>
struct Slots {
  static_assert(std::is_trivially_destructible_v<T> && std::is_trivially_copyable_v<T>);
  union {
    T at[N];
  };
  Slots() {}  // leaves `at` uninitialised
  T& operator[](size_t i) { return at[i]; }
  const T& operator[](size_t i) const { return at[i]; }
};

// Burst::ct_pending bits: what evaluate_hook still fills in a known flow's
// view (ct_view_complete, ct_view_tuples) before a rule reads it.
constexpr uint8_t kCtPendingScalars = 1u << 0;
constexpr uint8_t kCtPendingTuples = 1u << 1;

// Everything a burst carries between stages. On the worker's stack.
struct Burst {
  uint16_t in_port = 0;
  bool from_peer = false;  // handed over by another worker: already steered
  const route::Fib* fib = nullptr;
  const PublishedRules* rules = nullptr;  // null: no rules, plain routing
  uint64_t now = 0;

  // Received IPv4 packets, in receive order. A stage that drops or hands
  // over a packet sets its rx[] slot to nullptr; later stages skip it.
  uint16_t n_rx = 0;
  rte_mbuf* rx[kMaxBurst];
  Slots<net::PacketMeta, kMaxBurst> meta;
  // Each one's IPv4 header (frame + l2_len), worked out once at receive:
  // every stage reads it, and from the mbuf it is three dependent loads.
  // Stripping a VLAN tag moves the Ethernet header, not this one.
  uint8_t* ip[kMaxBurst];
  uint32_t rx_dst[kMaxBurst];
  uint32_t rx_next_hop[kMaxBurst];

  // Connection tracking of each received packet (when rules are loaded).
  conntrack::Entry* flow[kMaxBurst];
  conntrack::Direction dir[kMaxBurst];
  Slots<conntrack::CtView, kMaxBurst> ct;
  uint8_t ct_pending[kMaxBurst];  // kCtPending* bits: the parts of ct still to be filled from `flow`
  bool is_new[kMaxBurst];     // will become a flow if the rules accept it
  bool related[kMaxBurst];    // an ICMP error about `flow`
  Slots<net::FiveTuple, kMaxBurst> orig;   // a new flow's tuple before NAT
  Slots<net::FiveTuple, kMaxBurst> reply;  // a new flow's reply tuple as NAT chooses it
  uint32_t mark[kMaxBurst];
  uint32_t ct_mark[kMaxBurst];

  // Packets the router originates in this burst (ICMP errors, echo replies,
  // resets), with the conntrack state OUTPUT's rules see them in.
  uint16_t n_originated = 0;
  rte_mbuf* originated[kMaxBurst];
  uint32_t originated_dst[kMaxBurst];
  uint16_t originated_ct_state[kMaxBurst];
  uint32_t originated_next_hop[kMaxBurst];
};

uint8_t* frame_of(rte_mbuf* m) { return rte_pktmbuf_mtod(m, uint8_t*); }

void drop(Worker& w, rte_mbuf* m, DropReason reason) {
  w.counters.drop(reason);
  rte_pktmbuf_free(m);
}

// Forwarded packets leave untagged: the router's ports are plain L3 ports.
void strip_vlan(rte_mbuf* m) {
  uint8_t* f = frame_of(m);
  std::memmove(f + net::kVlanTagLen, f, 12);
  rte_pktmbuf_adj(m, net::kVlanTagLen);
}

void tx_enqueue(Worker& w, uint16_t port, rte_mbuf* m);

void flush_port(Worker& w, uint16_t port) {
  TxBuffer& buf = w.tx[port];
  if (buf.count == 0) return;
  uint64_t bytes = buf.bytes;
  const uint16_t sent = rte_eth_tx_burst(w.router->ports[port].port_id, w.queue, buf.pkts, buf.count);
  for (uint16_t i = sent; i < buf.count; ++i) {
    bytes -= rte_pktmbuf_pkt_len(buf.pkts[i]);
    rte_pktmbuf_free(buf.pkts[i]);
  }
  if (sent < buf.count) w.counters.drop(DropReason::kTxFull, buf.count - sent);
  w.counters.port[port].tx_packets.add(sent);
  w.counters.port[port].tx_bytes.add(bytes);
  buf.count = 0;
  buf.bytes = 0;
}

void tx_enqueue(Worker& w, uint16_t port, rte_mbuf* m) {
  TxBuffer& buf = w.tx[port];
  if (buf.count == TxBuffer::kSize) [[unlikely]] flush_port(w, port);
  buf.pkts[buf.count++] = m;
  buf.bytes += rte_pktmbuf_pkt_len(m);
}

void write_l2(rte_mbuf* m, const net::MacAddr& src, const net::MacAddr& dst) {
  uint8_t* f = frame_of(m);
  std::memcpy(f, dst.bytes.data(), 6);
  std::memcpy(f + 6, src.bytes.data(), 6);
}

// ARP requests are rate-limited per (port, address) to one per arp_retry.
void request_neighbour(Worker& w, uint16_t port, uint32_t ip, uint64_t now) {
  const Router& r = *w.router;
  ArpRequestSlot& slot = w.arp_requests[(ip * 2654435761u + port) >> 26];
  if (slot.ip == ip && slot.port == port && now - slot.last_tsc < r.arp_retry_cycles) return;
  slot = {ip, port, now};
  const PortInfo& p = r.ports[port];
  rte_mbuf* m = build_arp_request(r.pool, p.mac, p.source_for(ip), ip);
  if (m == nullptr) {
    w.counters.drop(DropReason::kNoMbuf);
    return;
  }
  tx_enqueue(w, port, m);
  w.counters.arp_requests_sent.add(1);
}

void learn_neighbour(Worker& w, uint16_t port, uint32_t ip, const net::MacAddr& mac) {
  auto known = w.router->neighbours->lookup(port, ip);
  if (known && known->mac == mac &&
      (known->state == route::NeighbourState::kReachable || known->state == route::NeighbourState::kStatic)) {
    return;
  }
  route::NeighbourLearn msg{ip, port, mac, 0};
  if (rte_ring_mp_enqueue_elem(w.router->learn_ring, &msg, sizeof msg) != 0) {
    w.counters.learn_ring_full.add(1);
  }
}

bool take_icmp_token(Worker& w, uint64_t now) {
  return w.icmp_bucket.take(now, w.router->icmp_token_cycles, w.router->icmp_bucket_cycles);
}

// `ct_state`: what the kernel's conntrack makes of it in OUTPUT - an ICMP
// error or a reset is RELATED to the flow it answers, an echo reply is
// ESTABLISHED (the request was tracked on its way in).
void originate(Burst& b, rte_mbuf* m, uint32_t dst, uint16_t ct_state) {
  b.originated[b.n_originated] = m;
  b.originated_dst[b.n_originated] = dst;
  b.originated_ct_state[b.n_originated] = ct_state;
  ++b.n_originated;
}

// What the sender of packet i sent, before this router's NAT: the flow's
// tuple in the packet's direction (a new flow's tuple before NAT).
bool pre_nat_tuple(const Burst& b, uint16_t i, net::FiveTuple& t) {
  if (b.rules == nullptr) return false;
  if (b.is_new[i]) {
    t = b.orig[i];
    return true;
  }
  if (b.flow[i] == nullptr || b.related[i]) return false;
  t = b.flow[i]->tuple(b.dir[i]);
  return true;
}

// An ICMP error or a reset the router sends about packet i shows what its
// sender sent, as nf_nat translates the kernel's own replies: the quote of
// an error, the source of a reset.
void untranslate_reply(const Burst& b, uint16_t i, rte_mbuf* reply) {
  net::FiveTuple pre;
  if (!pre_nat_tuple(b, i, pre) || pre == b.meta[i].tuple) return;
  net::PacketMeta rm;
  uint8_t* f = frame_of(reply);
  if (net::parse_frame(f, rte_pktmbuf_data_len(reply), rm) != DropReason::kNone) return;
  uint8_t* ip = f + rm.l2_len;
  const bool echo = pre.proto == net::kProtoIcmp;
  const uint16_t dst_port = net::to_host(echo ? pre.src_port : pre.dst_port);
  if (rm.tuple.proto == net::kProtoTcp) {
    nat_rewrite(ip, rm, NatSide::kSource, net::to_host(pre.dst.v4()), dst_port);
  } else {
    nat_rewrite_icmp_quote(ip, rm, NatSide::kDestination, net::to_host(pre.dst.v4()), dst_port);
    nat_rewrite_icmp_quote(ip, rm, NatSide::kSource, net::to_host(pre.src.v4()), net::to_host(pre.src_port));
  }
}

// Packet i's meta in full. A burst without rules parsed only its routing
// fields (MetaFill::kRouting); the paths that answer or quote a packet read
// the rest, rarely enough to parse the frame again. Its bytes are still as
// received: decide() sends errors and delivers before it changes a header.
void complete_meta(Burst& b, uint16_t i) {
  if (b.rules != nullptr) return;
  rte_mbuf* m = b.rx[i];
  net::parse_frame(frame_of(m), rte_pktmbuf_data_len(m), b.meta[i]);
}

void send_icmp_error(Worker& w, Burst& b, uint16_t i, uint8_t type, uint8_t code, uint16_t mtu = 0) {
  complete_meta(b, i);
  const net::PacketMeta& meta = b.meta[i];
  if (!may_send_icmp_error(meta)) return;
  if (!take_icmp_token(w, b.now)) {
    w.counters.icmp_rate_limited.add(1);
    return;
  }
  const uint32_t to = net::to_host(meta.tuple.src.v4());
  const uint32_t from = w.router->ports[b.in_port].source_for(to);
  rte_mbuf* m = build_icmp_error(w.router->pool, b.ip[i], from, type, code, mtu);
  if (m == nullptr) {
    w.counters.drop(DropReason::kNoMbuf);
    return;
  }
  untranslate_reply(b, i, m);
  w.counters.icmp_errors_sent.add(1);
  originate(b, m, to, conntrack::ct_state::kRelated);
}

void handle_arp(Worker& w, Burst& b, rte_mbuf* m, const net::PacketMeta& meta) {
  ArpPacket arp;
  uint8_t* f = frame_of(m);
  if (!read_arp(f + meta.l2_len, arp)) return drop(w, m, DropReason::kMalformedArp);
  const PortInfo& port = w.router->ports[b.in_port];
  const bool for_us = port.owns(arp.target_ip);
  // A neighbour is any address this port reaches directly: its connected
  // networks and on-link routes (as Linux accepts a sender that routes via
  // the receiving device without a gateway).
  auto reached_on_link = [&](uint32_t ip) {
    if (port.on_link(ip)) return true;
    const uint32_t index = b.fib->lookup(ip);
    if (index == route::Fib::kNoRoute) return false;
    const route::NextHop& nh = b.fib->next_hop(index);
    return nh.kind == route::NextHopKind::kForward && nh.port == b.in_port && nh.gateway == 0;
  };
  const bool learnable = arp.sender_ip != 0 && !port.owns(arp.sender_ip) && !arp.sender_mac.is_multicast() &&
                         reached_on_link(arp.sender_ip);
  // As Linux: learn the sender of anything addressed to us; otherwise only
  // refresh an entry we already have (gratuitous ARP, a moved address).
  if (learnable && (for_us || w.router->neighbours->lookup(b.in_port, arp.sender_ip))) {
    learn_neighbour(w, b.in_port, arp.sender_ip, arp.sender_mac);
  }
  if (!for_us) return drop(w, m, DropReason::kNotForUs);
  w.counters.local_delivered.add(1);
  if (arp.op != kArpRequest) {
    rte_pktmbuf_free(m);
    return;
  }
  arp_request_to_reply(f, meta.l2_len, port.mac);
  tx_enqueue(w, b.in_port, m);
  w.counters.arp_replies_sent.add(1);
}

// Stage 1: count, parse, answer ARP, keep IPv4 packets addressed to our MAC.
// kFill: kRouting when the burst has no rules to run (the stages after it
// then read only the routing fields of the meta; complete_meta() fills the
// rest for a packet that needs it).
template <net::MetaFill kFill>
void receive_and_parse(Worker& w, Burst& b, rte_mbuf** pkts, uint16_t n) {
  const Router& r = *w.router;
  const PortInfo& port = r.ports[b.in_port];
  // The port's MAC, and the directed broadcasts' common host bits, in
  // registers: read from the router in the loop, they were loaded again for
  // every packet (the meta stores may alias them). The MAC is the low 48
  // bits of a word, as a frame's first 8 bytes load on this little-endian
  // host: one compare of the two shifted left by 16.
  uint64_t mac = 0;
  std::memcpy(&mac, port.mac.bytes.data(), 6);
  const uint32_t broadcast_ones = r.directed_broadcast_ones;
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < n && i < kPrefetchAhead; ++i) rte_prefetch0(frame_of(pkts[i]));
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) rte_prefetch0(frame_of(pkts[i + kPrefetchAhead]));
    rte_mbuf* m = pkts[i];
    bytes += rte_pktmbuf_pkt_len(m);
    net::PacketMeta& meta = b.meta[b.n_rx];
    const uint8_t* f = frame_of(m);
    const net::ParseOptions options{(m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD};
    const DropReason reason = net::parse_frame<kFill>(f, rte_pktmbuf_data_len(m), meta, options);
    if (reason != DropReason::kNone) [[unlikely]] {
      drop(w, m, reason);
      continue;
    }
    if (meta.l3 == net::L3Kind::kArp) [[unlikely]] {
      handle_arp(w, b, m, meta);
      continue;
    }
    uint64_t dst_mac;
    std::memcpy(&dst_mac, f, 8);  // parsed: the frame holds at least an Ethernet header
    if (((dst_mac ^ mac) << 16) != 0) [[unlikely]] {
      drop(w, m, DropReason::kNotForUs);
      continue;
    }
    if (meta.l3 == net::L3Kind::kIpv6) [[unlikely]] {
      drop(w, m, DropReason::kIpv6NotForwarded);
      continue;
    }
    // The addresses from the header, which kRouting leaves out of the meta.
    uint8_t* ip = const_cast<uint8_t*>(f) + meta.l2_len;
    net::be32 src_be, dst_be;
    std::memcpy(&src_be, ip + 12, 4);
    std::memcpy(&dst_be, ip + 16, 4);
    const uint32_t src = net::to_host(src_be);
    // is_directed_broadcast() makes this test first too; made here on the
    // register copy, it costs no load of the router per packet.
    if ((src & broadcast_ones) == broadcast_ones && r.is_directed_broadcast(src)) [[unlikely]] {
      drop(w, m, DropReason::kMartianSource);
      continue;
    }
    // Drop Ethernet padding: the datagram is what we forward.
    const uint32_t frame_len = meta.l2_len + meta.ip_total_len;
    if (rte_pktmbuf_pkt_len(m) > frame_len) rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(m) - frame_len));
    b.rx[b.n_rx] = m;
    b.ip[b.n_rx] = ip;
    b.rx_dst[b.n_rx] = net::to_host(dst_be);
    ++b.n_rx;
  }
  if (b.from_peer) {
    w.counters.taken_over.add(n);  // the receiving worker counted them on the port
    return;
  }
  w.counters.port[b.in_port].rx_packets.add(n);
  w.counters.port[b.in_port].rx_bytes.add(bytes);
}

// ---- connection tracking and rules ------------------------------------------

// Fills `l4` field by field in the caller's memory. (Returned by value, the
// 16-byte struct was assembled from byte stores on the stack and read back
// as two 8-byte words: a store-forwarding stall on every tracked packet.)
// Inlined into each tracking stage.
[[gnu::always_inline]] inline void fill_l4_info(const uint8_t* ip, const net::PacketMeta& meta, conntrack::L4Info& l4) {
  l4.tcp_flags = meta.tcp_flags;
  l4.icmp_type = meta.icmp_type;
  l4.icmp_code = meta.icmp_code;
  l4.ip_len = meta.ip_total_len;
  if (meta.tuple.proto == net::kProtoTcp && meta.fragment != net::Fragment::kLater) {
    const uint8_t* tcp = ip + meta.l3_len;
    uint32_t seq, ack;
    std::memcpy(&seq, tcp + 4, 4);
    std::memcpy(&ack, tcp + 8, 4);
    l4.tcp_seq = net::bswap32(seq);  // one load and a byte swap each, not four byte loads
    l4.tcp_ack = net::bswap32(ack);
    l4.l4_payload_len = static_cast<uint16_t>(meta.ip_total_len - meta.l3_len - (tcp[12] >> 4) * 4u);
  }
}

uint64_t tsc_to_ns(uint64_t tsc, uint64_t hz) { return tsc / hz * 1000000000ull + tsc % hz * 1000000000ull / hz; }

// Replies to source-translated flows are steered by port: worker k of n owns
// the NAT ports p with p % n == k (DESIGN §3 point 2). Other packets stay.
uint16_t steer_owner(const Worker& w, const net::PacketMeta& meta) {
  const Router& r = *w.router;
  if (r.worker_count <= 1 || !r.is_local(net::to_host(meta.tuple.dst.v4()))) return w.queue;
  if (meta.tuple.proto == net::kProtoTcp || meta.tuple.proto == net::kProtoUdp) {
    return static_cast<uint16_t>(net::to_host(meta.tuple.dst_port) % r.worker_count);
  }
  if (meta.tuple.proto == net::kProtoIcmp && meta.icmp_type == kIcmpEchoReply) {
    return static_cast<uint16_t>(net::to_host(meta.tuple.src_port) % r.worker_count);
  }
  return w.queue;
}

// The owner of the flow an ICMP error quotes, when its source was translated
// to one of the router's addresses.
uint16_t quote_owner(const Worker& w, const net::FiveTuple& quoted) {
  const Router& r = *w.router;
  if (r.worker_count <= 1 || !r.is_local(net::to_host(quoted.src.v4()))) return w.queue;
  if (quoted.proto == net::kProtoTcp || quoted.proto == net::kProtoUdp || quoted.proto == net::kProtoIcmp) {
    return static_cast<uint16_t>(net::to_host(quoted.src_port) % r.worker_count);
  }
  return w.queue;
}

void hand_over(Worker& w, Burst& b, uint16_t i, uint16_t owner) {
  rte_mbuf* m = b.rx[i];
  b.rx[i] = nullptr;
  m->port = w.router->ports[b.in_port].port_id;  // the owner needs the ingress port
  if (rte_ring_sp_enqueue(w.router->handover[w.queue][owner], m) != 0) return drop(w, m, DropReason::kHandoverFull);
  w.counters.handed_over.add(1);
}

void send_to_peers(Worker& w, WorkerMessage msg) {
  const Router& r = *w.router;
  for (uint16_t peer = 0; peer < r.worker_count; ++peer) {
    if (peer == w.queue) continue;
    if (rte_ring_sp_enqueue_elem(r.messages[w.queue][peer], &msg, sizeof msg) == 0) {
      w.counters.redirects_sent.add(1);
    } else {
      w.counters.redirects_lost.add(1);
    }
  }
}

// Tells the other workers to drop the stubs of the flows that have left this
// worker's table since the last call (expired, killed, early-dropped,
// deleted): without it a stub outlived its flow by days, sending a later
// flow's replies with the same tuple to a worker that no longer knew them.
void announce_departures(Worker& w) {
  const std::vector<net::FiveTuple>& gone = w.flows->departures();
  if (gone.empty()) [[likely]] return;
  for (const net::FiveTuple& t : gone) {
    WorkerMessage msg;
    msg.type = WorkerMessage::Type::kRemoveRedirect;
    msg.owner = static_cast<uint8_t>(w.queue);
    msg.tuple = t;
    send_to_peers(w, msg);
  }
  w.flows->clear_departures();
}

// Sends every other worker the stub of a flow of this worker, or its update:
// the reply tuple, this worker as its owner, and the flow's status, so that a
// stub of an ASSURED flow is spared by early drop as the flow is. The stub
// lives until the flow's departure is announced.
void send_stub(Worker& w, const conntrack::Entry& e) {
  WorkerMessage msg;
  msg.type = WorkerMessage::Type::kAddRedirect;
  msg.owner = static_cast<uint8_t>(w.queue);
  msg.status = e.status;
  msg.timeout_s = w.flows->timeouts().tcp_established;
  msg.tuple = e.reply();
  send_to_peers(w, msg);
}

// Whether the replies of a translated flow need stubs at the other workers:
// steer_owner() finds the owner only of replies to one of the router's own
// addresses whose port (TCP, UDP) or echo identifier lies in the owner's
// slice. A flow translated only in its destination, whose source moved to
// an address not the router's (a null binding that changed a client's port
// because the reply tuple was taken, SNAT to a foreign address), or to a
// port outside this worker's slice (SNAT to one port, or a range whose
// slice here was full), has replies the port does not steer here: every
// other worker keeps a stub sending them here.
bool needs_redirects(const Worker& w, const conntrack::Entry& e) {
  const Router& r = *w.router;
  if ((e.status & (conntrack::status::kDstNat | conntrack::status::kSrcNat)) == 0) return false;
  if ((e.status & conntrack::status::kSrcNat) == 0) return true;
  if (!r.is_local(net::to_host(e.reply_dst4))) return true;
  const net::FiveTuple reply = e.reply();
  uint16_t port;
  if (reply.proto == net::kProtoTcp || reply.proto == net::kProtoUdp) {
    port = net::to_host(reply.dst_port);
  } else if (reply.proto == net::kProtoIcmp) {
    port = net::to_host(reply.src_port);  // the identifier, as steer_owner() reads an echo reply's
  } else {
    return true;  // no port to steer by
  }
  return port % r.worker_count != w.queue;
}

// Stage: look every packet's flow up in bulk, hand packets owned elsewhere to
// their owner, track the rest (state machine, timeouts), and classify them
// NEW / ESTABLISHED / RELATED / INVALID as netfilter's conntrack would.
void track(Worker& w, Burst& b) {
  conntrack::Table& table = *w.flows;
  table.lookup_bulk(&b.meta[0].tuple, b.n_rx, b.now, b.flow, b.dir, sizeof(net::PacketMeta));
  // Whole arrays, a constant size: a few vector stores a burst, not five a packet.
  std::memset(b.is_new, 0, sizeof(b.is_new));
  std::memset(b.related, 0, sizeof(b.related));
  std::memset(b.ct_pending, 0, sizeof(b.ct_pending));
  std::memset(b.mark, 0, sizeof(b.mark));
  std::memset(b.ct_mark, 0, sizeof(b.ct_mark));
  for (uint16_t i = 0; i < b.n_rx; ++i) {
    const net::PacketMeta& meta = b.meta[i];
    const uint8_t* ip = b.ip[i];
    if (meta.fragment == net::Fragment::kLater) [[unlikely]] {
      // dpgate does not reassemble: a later fragment has no ports to track by.
      b.flow[i] = nullptr;
      b.ct[i] = conntrack::ct_view_invalid();
      w.counters.ct_invalid.add(1);
      continue;
    }
    if (meta.tuple.proto == net::kProtoIcmp && is_icmp_error(meta.icmp_type)) [[unlikely]] {
      net::FiveTuple quoted;
      conntrack::Entry* e = icmp_quoted_tuple(ip, meta, quoted) ? table.find_related(quoted, b.now, &b.dir[i]) : nullptr;
      b.flow[i] = e;
      if (e != nullptr && e->is_redirect()) {
        hand_over(w, b, i, e->owner);
      } else if (e != nullptr) {
        b.related[i] = true;
        b.ct[i] = conntrack::ct_view_related(table, *e, b.dir[i], b.now);
        b.ct_mark[i] = e->mark;  // RELATED is rare: the view read line 1 already
      } else {
        // The quoted packet left with a translated source: its flow is owned
        // by the worker that port belongs to (DESIGN §3 point 2).
        const uint16_t owner = quoted.proto != 0 && !b.from_peer ? quote_owner(w, quoted) : w.queue;
        if (owner != w.queue) {
          hand_over(w, b, i, owner);
          continue;
        }
        b.ct[i] = conntrack::ct_view_invalid();
        w.counters.ct_invalid.add(1);
      }
      continue;
    }
    conntrack::Entry* e = b.flow[i];
    if (e != nullptr && e->is_redirect()) {
      if (!b.from_peer) {
        hand_over(w, b, i, e->owner);
        continue;
      }
      e = b.flow[i] = nullptr;  // a stale stub: the owner sent it back, treat as new here
    }
    conntrack::L4Info l4;
    if (e != nullptr) {
      const uint16_t status_before = e->status;
      // Table::track() in two halves: an established flow's ACK, most
      // packets, reads neither sequence number nor payload length.
      conntrack::TrackResult result;
      if (table.tracks_inline(*e, meta.tcp_flags)) [[likely]] {
        result = table.track_inline(*e, b.dir[i], meta.ip_total_len, b.now);
      } else {
        fill_l4_info(ip, meta, l4);
        result = table.track_any(*e, b.dir[i], l4, b.now);
      }
      if ((e->status & ~status_before & conntrack::status::kAssured) != 0 &&
          (e->status & conntrack::status::kRedirected) != 0) [[unlikely]] {
        send_stub(w, *e);  // now ASSURED: the stubs must not be early-dropped either
      }
      if (result != conntrack::TrackResult::kReopen) {
        if (result == conntrack::TrackResult::kInvalid) [[unlikely]] {
          b.ct[i] = conntrack::ct_view_invalid();
          w.counters.ct_invalid.add(1);
        } else if (b.rules->packet_fields & rules::packet_field::kCtExpire) [[unlikely]] {
          // the seconds left as this packet left them: a later packet of the
          // flow in this burst may refresh them
          conntrack::ct_view_scalars(b.ct[i], table, *e, b.dir[i], result, b.now, true);
          b.ct_pending[i] = kCtPendingTuples;
        } else {
          conntrack::ct_view_snapshot(b.ct[i], *e);
          b.ct_pending[i] = kCtPendingScalars | kCtPendingTuples;
        }
        if (b.rules->packet_fields & rules::packet_field::kCtMark) b.ct_mark[i] = e->mark;
        continue;
      }
      b.flow[i] = nullptr;  // a SYN reopened a closed flow: a new connection
    } else {
      fill_l4_info(ip, meta, l4);
    }
    if (!b.from_peer) {
      const uint16_t owner = steer_owner(w, meta);
      if (owner != w.queue) {
        hand_over(w, b, i, owner);
        continue;
      }
    }
    if (conntrack::may_start_flow(meta.tuple, l4, table.timeouts())) {
      b.is_new[i] = true;
      b.orig[i] = meta.tuple;
      b.reply[i] = conntrack::invert(meta.tuple);
      b.ct[i] = conntrack::ct_view_new(b.orig[i], b.reply[i]);
    } else {
      b.ct[i] = conntrack::ct_view_invalid();
      w.counters.ct_invalid.add(1);
    }
  }
}

bool take_log_token(Worker& w, uint64_t now) {
  return w.log_bucket.take(now, w.router->log_token_cycles, w.router->log_bucket_cycles);
}

// The LOG rules a packet passed in `hook` (its frame in `m`, the IP header at
// `l2_len`; `in_port` kNoPort for what the router sends): one record each on
// this worker's log ring, within the rate limit. The control thread prints them.
void log_packet(Worker& w, rte_mbuf* m, uint16_t l2_len, uint16_t in_port, rules::Hook hook, uint16_t out_port,
                const rules::HookResult& res, uint64_t now) {
  const Router& r = *w.router;
  if (res.logs_overflow) w.counters.log_suppressed.add(1);
  const uint32_t ip_len = rte_pktmbuf_pkt_len(m) - l2_len;
  const uint32_t copy_len = std::min<uint32_t>(ip_len, LogRecord::kIpBytes);
  for (uint8_t k = 0; k < res.log_count; ++k) {
    if (!take_log_token(w, now)) {
      w.counters.log_suppressed.add(1);
      continue;
    }
    LogRecord rec;
    const auto* ip = static_cast<const uint8_t*>(rte_pktmbuf_read(m, l2_len, copy_len, rec.ip));
    if (ip == nullptr) [[unlikely]] continue;  // cannot happen: copy_len <= the packet's length
    make_log_record(rec, *res.logs[k].target, hook, in_port == kNoPort ? "" : r.ports[in_port].name,
                    out_port == kNoPort ? "" : r.ports[out_port].name, res.logs[k].mark, frame_of(m), l2_len, ip,
                    static_cast<uint16_t>(copy_len), static_cast<uint16_t>(ip_len));
    if (rte_ring_sp_enqueue_elem(r.log_rings[w.queue], &rec, sizeof rec) != 0) {
      w.counters.log_ring_full.add(1);
    } else {
      w.counters.log_records.add(1);
    }
  }
}

// Runs one hook's tables for packet i (run_hook below, once it is known that
// the hook has work); counts the rules it matched and keeps the marks it set.
[[gnu::noinline]] const rules::HookResult* evaluate_hook(Worker& w, Burst& b, uint16_t i, rules::Hook hook,
                                                         uint16_t out_port) {
  conntrack::CtView& ct = b.ct[i];
  rules::HookResult& res = w.hook_result;
  if (b.ct_pending[i] != 0) {
    if (b.ct_pending[i] & kCtPendingScalars) conntrack::ct_view_complete(ct, b.dir[i]);
    if ((b.ct_pending[i] & kCtPendingTuples) && (b.rules->packet_fields & rules::packet_field::kCtTuples)) {
      conntrack::ct_view_tuples(ct, *b.flow[i]);
    }
    b.ct_pending[i] = 0;
  }
  rules::Packet& p = w.rule_packet;
  const net::PacketMeta& meta = b.meta[i];
  ct.mark = b.ct_mark[i];
  fill_rule_packet(p, *w.router, b.ip[i], meta, b.in_port, out_port, b.mark[i], ct,
                   b.rules->packet_fields);
  w.match_state->begin_packet();  // payload matches scan once per packet and hook
  b.rules->program.evaluate(hook, p, *w.match_state, res);
  b.rules->count(w.queue, res, meta.ip_total_len);
  if (res.log_count != 0 || res.logs_overflow) [[unlikely]] {
    log_packet(w, b.rx[i], meta.l2_len, b.in_port, hook, out_port, res, b.now);
  }
  b.mark[i] = res.mark;
  b.ct_mark[i] = res.ct_mark;
  // Without a rule that reads or sets the connmark it was never loaded
  // (it lies in the entry's second line) and cannot have changed.
  if (b.flow[i] != nullptr && (b.rules->packet_fields & rules::packet_field::kCtMark)) {
    b.flow[i]->mark = res.ct_mark;
  }
  if (res.notrack) {
    b.is_new[i] = false;
    b.ct[i] = conntrack::ct_view_untracked();
    b.ct_pending[i] = 0;
  }
  return &res;
}

// The result of packet i's hook for the caller to act on: the worker's one
// HookResult (a few hundred bytes, never built per packet), valid until the
// next run_hook; nullptr when no table of the hook has anything to evaluate
// for this packet (it accepts and sets nothing: most hooks of an established
// packet). That test is inline at every call; the evaluation is not.
// Whether the packet walks nat (walks_nat() of its view) is its is_new
// byte: track() and prerouting() give a packet the NEW, unconfirmed view
// (ct_view_new) exactly when they mark it new, every other view is
// confirmed, INVALID or UNTRACKED, and a NOTRACK clears both. One byte
// read instead of the view's two fields and the test.
inline const rules::HookResult* run_hook(Worker& w, Burst& b, uint16_t i, rules::Hook hook, uint16_t out_port) {
  if (!b.rules->hook_has_work(hook, b.is_new[i])) return nullptr;
  return evaluate_hook(w, b, i, hook, out_port);
}

// A DROP or REJECT verdict: REJECT answers with a TCP reset or an ICMP
// unreachable of the requested kind (rate-limited like every ICMP error).
void refuse(Worker& w, Burst& b, uint16_t i, const rules::HookResult& res) {
  rte_mbuf* m = b.rx[i];
  b.rx[i] = nullptr;
  if (res.action == rules::Action::kDrop) return drop(w, m, DropReason::kRuleDrop);
  const net::PacketMeta& meta = b.meta[i];
  const uint8_t* ip = b.ip[i];
  if (res.reject == rules::RejectWith::kTcpReset) {
    if (rte_mbuf* rst = build_tcp_reset(w.router->pool, ip, meta)) {
      untranslate_reply(b, i, rst);
      w.counters.icmp_errors_sent.add(1);
      originate(b, rst, net::to_host(meta.tuple.src.v4()), conntrack::ct_state::kRelated);
    }
  } else {
    static constexpr uint8_t kCodes[] = {0, 1, 3, 2, 9, 10, 3, 13};  // RejectWith order -> ICMP code
    b.rx[i] = m;  // send_icmp_error quotes b.rx[i]
    send_icmp_error(w, b, i, kIcmpUnreachable, kCodes[static_cast<size_t>(res.reject)]);
    b.rx[i] = nullptr;
  }
  drop(w, m, DropReason::kRuleReject);
}

// The address and port of a parsed tuple that NAT's `side` rewrites (ICMP:
// the identifier, which the parser keeps in src_port either way).
struct TupleHalf {
  net::IpAddr& addr;
  net::be16& port;
};
[[gnu::always_inline]] inline TupleHalf tuple_half(net::PacketMeta& meta, NatSide side) {
  const bool icmp = meta.tuple.proto == net::kProtoIcmp;
  return {side == NatSide::kDestination ? meta.tuple.dst : meta.tuple.src,
          icmp ? meta.tuple.src_port : (side == NatSide::kDestination ? meta.tuple.dst_port : meta.tuple.src_port)};
}

// Rewrites packet i's destination (PREROUTING's half of NAT) or source
// (POSTROUTING's half) to `addr` and `port` (ICMP: the identifier), and its
// parsed tuple with it. Inlined: each caller's side is a constant, and the
// established DNAT path calls it for every packet.
[[gnu::always_inline]] inline void rewrite(Burst& b, uint16_t i, NatSide side, net::be32 addr, net::be16 port) {
  net::PacketMeta& meta = b.meta[i];
  nat_rewrite(b.ip[i], meta, side, net::to_host(addr), net::to_host(port));
  const TupleHalf have = tuple_half(meta, side);
  std::memcpy(have.addr.bytes.data(), &addr, 4);  // IPv4: the other 12 bytes are zero already
  have.port = port;
  if (side == NatSide::kDestination) b.rx_dst[i] = net::to_host(addr);
}

// rewrite() when the address or port differs from the packet's: a new
// connection's chosen binding may leave a half as it was.
[[gnu::always_inline]] inline void translate(Burst& b, uint16_t i, NatSide side, net::be32 addr,
                                             net::be16 port) {
  const TupleHalf have = tuple_half(b.meta[i], side);
  if (have.addr.v4() == addr && have.port == port) return;
  rewrite(b, i, side, addr, port);
}

// PREROUTING's half of a known flow's NAT on packet i (none when the flow
// is not destination-translated in this direction). When the status bit is
// set the address or port the packet arrived with differs (nat_status), so
// no compare.
[[gnu::always_inline]] inline void translate_destination(Burst& b, uint16_t i) {
  if (!conntrack::rewrites_destination(*b.flow[i], b.dir[i])) return;
  const conntrack::Endpoint4 to = conntrack::translated_destination4(*b.flow[i], b.dir[i]);
  rewrite(b, i, NatSide::kDestination, to.addr, to.port);
}

// An ICMP error about a translated flow: the outer addresses become what the
// error's direction looks like after NAT, and the quoted packet what its
// sender sent before NAT (nf_nat_icmp_reply_translation).
void translate_related(Burst& b, uint16_t i) {
  const conntrack::Entry& e = *b.flow[i];
  if ((e.status & (conntrack::status::kSrcNat | conntrack::status::kDstNat)) == 0) return;
  net::PacketMeta& meta = b.meta[i];
  uint8_t* ip = b.ip[i];
  const net::FiveTuple outer = conntrack::translated(e, b.dir[i]);
  const net::FiveTuple quote = e.tuple(conntrack::opposite(b.dir[i]));
  const bool quote_icmp = quote.proto == net::kProtoIcmp;
  nat_rewrite_icmp_quote(ip, meta, NatSide::kSource, net::to_host(quote.src.v4()), net::to_host(quote.src_port));
  nat_rewrite_icmp_quote(ip, meta, NatSide::kDestination, net::to_host(quote.dst.v4()),
                         net::to_host(quote_icmp ? quote.src_port : quote.dst_port));
  // The outer ICMP header has no ports: only addresses change.
  nat_rewrite(ip, meta, NatSide::kSource, net::to_host(outer.src.v4()), 0);
  nat_rewrite(ip, meta, NatSide::kDestination, net::to_host(outer.dst.v4()), 0);
  meta.tuple.src = outer.src;
  meta.tuple.dst = outer.dst;
  b.rx_dst[i] = net::to_host(outer.dst.v4());
}

// Stage: PREROUTING (raw, mangle, nat). A new flow's DNAT is chosen here; every
// packet of a translated flow gets its destination half rewritten.
void prerouting(Worker& w, Burst& b) {
  // A new connection's nat walk starts with a hash lookup (kube-proxy's
  // KUBE-SERVICES) whose slot and chain lie far apart in a large ruleset:
  // the Program fetches them a few packets ahead. Only for first packets,
  // and only in a burst that has some: the others skip nat, and asking per
  // packet costs an established one ~10-20 cycles.
  auto key = [&b](uint32_t i, rules::Program::LookaheadKey& k) {
    const net::PacketMeta& m = b.meta[i];
    if (b.rx[i] == nullptr || !b.is_new[i] ||  // walks_nat (run_hook)
        m.fragment == net::Fragment::kLater) {
      return false;
    }
    k = {net::to_host(m.tuple.dst.v4()), net::to_host(m.tuple.dst_port), m.tuple.proto, true};
    return true;
  };
  auto visit = [&](uint32_t i) {
    if (b.rx[i] == nullptr) return;
    const rules::HookResult* res = run_hook(w, b, uint16_t(i), rules::Hook::kPrerouting, kNoPort);
    if (res != nullptr && res->action != rules::Action::kAccept) [[unlikely]] {
      refuse(w, b, uint16_t(i), *res);
      return;
    }
    if (b.is_new[i]) {
      if (res != nullptr && res->has_dnat) {
        choose_dnat(res->dnat, *w.router, b.in_port, *w.flows, *w.any_ports, b.reply[i], b.now);
        b.ct[i] = conntrack::ct_view_new(b.orig[i], b.reply[i]);
        // invert(reply): the destination is the reply's source (ICMP: its identifier).
        translate(b, uint16_t(i), NatSide::kDestination, b.reply[i].src.v4(), b.reply[i].src_port);
      }
    } else if (b.related[i]) {
      translate_related(b, uint16_t(i));
    } else if (b.flow[i] != nullptr) {
      translate_destination(b, uint16_t(i));
    }
  };
  bool any_new = false;
  for (uint16_t i = 0; i < b.n_rx; ++i) any_new |= b.is_new[i];
  if (any_new) {
    b.rules->program.with_lookahead(rules::Hook::kPrerouting, b.n_rx, key, visit);
    // A new flow's reply tuple is final now unless SNAT moves it: POSTROUTING
    // asks whether it is taken (the null binding, SNAT's port choice) and
    // inserts it. Its index line is a random miss, one per connection,
    // that each packet met alone there; fetched for the burst here, they
    // overlap each other and the route lookups.
    for (uint16_t i = 0; i < b.n_rx; ++i) {
      if (b.is_new[i] && b.rx[i] != nullptr) w.flows->prefetch(b.reply[i]);
    }
    return;
  }
  // No first packet: a packet of a known flow (not RELATED) walks no nat
  // table, so whether PREROUTING has anything to evaluate for it is one
  // question per burst, and when nothing, its rewrite is done here inline
  // rather than through a call per packet.
  const bool flow_hooks = b.rules->hook_has_work(rules::Hook::kPrerouting, false);
  for (uint16_t i = 0; i < b.n_rx; ++i) {
    if (!flow_hooks && b.flow[i] != nullptr && !b.related[i] && b.rx[i] != nullptr) {
      translate_destination(b, i);
    } else {
      visit(i);
    }
  }
}

// POSTROUTING (mangle, nat) for a forwarded packet, then the confirmation of
// a new flow: SNAT/MASQUERADE chosen, the entry inserted, the source half of
// the translation applied. False when the packet was dropped.
bool postrouting(Worker& w, Burst& b, uint16_t i, const route::NextHop& nh) {
  const rules::HookResult* res = run_hook(w, b, i, rules::Hook::kPostrouting, nh.port);
  if (res != nullptr && res->action != rules::Action::kAccept) [[unlikely]] {
    refuse(w, b, i, *res);
    return false;
  }
  if (b.related[i]) return true;
  if (b.is_new[i]) {
    if (res != nullptr && res->has_snat) {
      const uint32_t next_hop = nh.gateway != 0 ? nh.gateway : b.rx_dst[i];
      conntrack::PortAllocator* any_ports = w.router->worker_count > 1 ? w.any_ports.get() : nullptr;
      if (!choose_snat(res->snat, *w.router, nh.port, next_hop, *w.flows, *w.nat_ports, any_ports, b.reply[i],
                       b.now)) {
        drop(w, b.rx[i], DropReason::kNatNoPort);
        b.rx[i] = nullptr;
        return false;
      }
    } else if (!null_binding(*w.flows, *w.nat_ports, b.reply[i], b.now)) {
      drop(w, b.rx[i], DropReason::kNatNoPort);
      b.rx[i] = nullptr;
      return false;
    }
    conntrack::InsertStatus status;
    const uint8_t* ip = b.ip[i];
    conntrack::L4Info l4;
    fill_l4_info(ip, b.meta[i], l4);
    conntrack::Entry* e = w.flows->insert(b.orig[i], b.reply[i], l4, b.now, &status);
    if (e == nullptr) {
      drop(w, b.rx[i], status == conntrack::InsertStatus::kFull ? DropReason::kConntrackFull : DropReason::kConntrackClash);
      b.rx[i] = nullptr;
      return false;
    }
    e->mark = b.ct_mark[i];
    b.flow[i] = e;
    b.dir[i] = conntrack::Direction::kOriginal;
    if (w.router->worker_count > 1 && needs_redirects(w, *e)) {
      announce_departures(w);  // before the stub: a removal must not overtake it
      e->status |= conntrack::status::kRedirected;
      send_stub(w, *e);
    }
  }
  if (b.flow[i] != nullptr && conntrack::rewrites_source(*b.flow[i], b.dir[i])) {
    // translate, not rewrite: an echo both DNATed and SNATed got its new
    // identifier with the destination in PREROUTING, and SNAT may have kept
    // the address
    const conntrack::Endpoint4 from = conntrack::translated_source4(*b.flow[i], b.dir[i]);
    translate(b, i, NatSide::kSource, from.addr, from.port);
  }
  return true;
}

// Adds or removes the redirect stubs of n messages, in the order sent.
void apply_messages(Worker& w, const WorkerMessage* msgs, unsigned n, uint64_t now) {
  for (unsigned k = 0; k < n; ++k) {
    const WorkerMessage& msg = msgs[k];
    if (msg.type == WorkerMessage::Type::kAddRedirect) {
      w.flows->insert_redirect(msg.tuple, msg.owner, msg.status, now, msg.timeout_s);
      continue;
    }
    conntrack::Direction dir;
    conntrack::Entry* e = w.flows->lookup(msg.tuple, now, &dir);
    if (e != nullptr && e->is_redirect() && e->owner == msg.owner) w.flows->remove(*e);
  }
}

// Messages from other workers: redirect stubs to add or remove. Everything
// a peer has queued, up to kMaxMessagesPerDrain of it (a peer opening 32
// connections a burst sends as fast as this one drains 32 a poll: a
// backlog would never shrink).
void drain_messages(Worker& w, uint64_t now) {
  const Router& r = *w.router;
  WorkerMessage msgs[32];
  for (uint16_t peer = 0; peer < r.worker_count; ++peer) {
    if (peer == w.queue) continue;
    unsigned n = 0;
    for (unsigned taken = 0; taken < kMaxMessagesPerDrain; taken += n) {
      n = rte_ring_sc_dequeue_burst_elem(r.messages[peer][w.queue], msgs, sizeof msgs[0], 32, nullptr);
      if (n == 0) break;
      apply_messages(w, msgs, n, now);
    }
  }
}

// Stage 2: one bulk LPM lookup for the burst.
void lookup_routes(const route::Fib& fib, const uint32_t* dst, uint32_t* next_hop, uint16_t n) {
  if (n != 0) fib.lookup_bulk(dst, next_hop, n);
}

void deliver_local(Worker& w, Burst& b, uint16_t i) {
  complete_meta(b, i);
  rte_mbuf* m = b.rx[i];
  const net::PacketMeta& meta = b.meta[i];
  const bool echo = meta.tuple.proto == net::kProtoIcmp && meta.icmp_type == kIcmpEchoRequest &&
                    meta.fragment == net::Fragment::kNone;
  if (!echo || !echo_request_to_reply(b.ip[i], meta.ip_total_len)) {
    return drop(w, m, DropReason::kLocalUnsupported);
  }
  if (meta.has_vlan) strip_vlan(m);
  w.counters.local_delivered.add(1);
  originate(b, m, net::to_host(meta.tuple.src.v4()), conntrack::ct_state::kEstablished);
}

void wait_for_neighbour(Worker& w, rte_mbuf* m, uint16_t port, uint32_t neighbour, uint64_t now) {
  if (w.pending.size() >= w.router->arp_queue) return drop(w, m, DropReason::kNeighbourQueueFull);
  w.pending.push_back({m, neighbour, port, now + w.router->arp_resolve_timeout_cycles});
  request_neighbour(w, port, neighbour, now);
}

// send()'s lookup when the next hop differs from the cached one: out of
// line, once per run of packets to another next hop.
[[gnu::noinline]] void look_up_neighbour(Worker& w, uint16_t port, uint32_t ip) {
  const Router& r = *w.router;
  const std::optional<route::Neighbour> n = r.neighbours->lookup(port, ip);
  NeighbourCache& c = w.neighbour;
  c.port = port;
  c.ip = ip;
  c.state.reset();
  if (!n) return;
  c.state = n->state;
  std::memcpy(c.l2, n->mac.bytes.data(), 6);
  std::memcpy(c.l2 + 6, r.ports[port].mac.bytes.data(), 6);
}

// Last stage, packet by packet as decide() forwards them and
// route_originated() routes the router's own: neighbour lookup, L2 rewrite,
// buffered TX. (Queued for a separate pass over the burst, each packet was
// written to three arrays and read back: ~3 cycles of a plain router's ~60.)
// Inlined in both callers.
[[gnu::always_inline]] inline void send(Worker& w, Burst& b, rte_mbuf* m, const route::NextHop& nh, uint32_t dst) {
  const uint32_t next = nh.gateway != 0 ? nh.gateway : dst;
  const NeighbourCache& c = w.neighbour;
  if (nh.port != c.port || next != c.ip) [[unlikely]] look_up_neighbour(w, nh.port, next);
  if (!c.state) [[unlikely]] return wait_for_neighbour(w, m, nh.port, next, b.now);
  if (*c.state == route::NeighbourState::kStale) [[unlikely]] request_neighbour(w, nh.port, next, b.now);
  std::memcpy(frame_of(m), c.l2, 12);
  tx_enqueue(w, nh.port, m);
}

// Stage 3: forward, deliver locally, or answer with an ICMP error.
void decide(Worker& w, Burst& b) {
  const Router& r = *w.router;
  const bool has_rules = b.rules != nullptr;  // in a register: the stores below may alias `b`
  uint64_t forwarded = 0;
  for (uint16_t i = 0; i < b.n_rx; ++i) {
    rte_mbuf* m = b.rx[i];
    if (m == nullptr) continue;  // dropped or handed over by an earlier stage
    const net::PacketMeta& meta = b.meta[i];
    if (b.rx_next_hop[i] == route::Fib::kNoRoute) [[unlikely]] {
      send_icmp_error(w, b, i, kIcmpUnreachable, kIcmpCodeNetUnreachable);
      drop(w, m, DropReason::kNoRoute);
      continue;
    }
    const route::NextHop& nh = b.fib->next_hop(b.rx_next_hop[i]);
    if (nh.kind == route::NextHopKind::kLocal) [[unlikely]] {
      if (b.rules != nullptr) {
        const rules::HookResult* res = run_hook(w, b, i, rules::Hook::kInput, kNoPort);
        if (res != nullptr && res->action != rules::Action::kAccept) {
          refuse(w, b, i, *res);
          continue;
        }
      }
      deliver_local(w, b, i);
      continue;
    }
    if (nh.kind == route::NextHopKind::kDirectedBroadcast) [[unlikely]] {
      drop(w, m, DropReason::kMartianDestination);
      continue;
    }
    if (meta.ttl <= 1) [[unlikely]] {
      send_icmp_error(w, b, i, kIcmpTimeExceeded, kIcmpCodeTtlInTransit);
      drop(w, m, DropReason::kTtlExceeded);
      continue;
    }
    uint8_t* ip = b.ip[i];
    const uint16_t mtu = r.ports[nh.port].mtu;
    if (meta.ip_total_len > mtu) [[unlikely]] {
      // dpgate does not fragment: DF or not, the sender learns the MTU.
      send_icmp_error(w, b, i, kIcmpUnreachable, kIcmpCodeFragNeeded, mtu);
      drop(w, m, DropReason::kFragmentationNeeded);
      continue;
    }
    if (has_rules) {
      const rules::HookResult* res = run_hook(w, b, i, rules::Hook::kForward, nh.port);
      if (res != nullptr && res->action != rules::Action::kAccept) [[unlikely]] {
        refuse(w, b, i, *res);
        continue;
      }
      if (!postrouting(w, b, i, nh)) continue;
    }
    net::ipv4_decrement_ttl(ip);
    if (meta.has_vlan) strip_vlan(m);
    send(w, b, m, nh, b.rx_dst[i]);
    ++forwarded;
  }
  w.counters.forwarded.add(forwarded);
}

// OUTPUT (raw, mangle, filter: nat sees only new connections, and what the
// router sends is never one) then POSTROUTING (mangle) for packet k the
// router originates, leaving on `out_port`. False when a rule dropped it (a
// REJECT there drops too: no error is sent about the router's own error).
bool output_hooks(Worker& w, Burst& b, uint16_t k, uint16_t out_port) {
  rte_mbuf* m = b.originated[k];
  uint8_t* f = frame_of(m);
  net::PacketMeta meta;
  if (net::parse_frame(f, rte_pktmbuf_data_len(m), meta) != DropReason::kNone) [[unlikely]] return true;
  conntrack::CtView ct = conntrack::ct_view_invalid();
  ct.state = b.originated_ct_state[k];
  rules::Packet p;
  fill_rule_packet(p, *w.router, f + meta.l2_len, meta, kNoPort, out_port, 0, ct, b.rules->packet_fields);
  for (const rules::Hook hook : {rules::Hook::kOutput, rules::Hook::kPostrouting}) {
    w.match_state->begin_packet();
    const rules::HookResult res = b.rules->program.evaluate(hook, p, *w.match_state);
    b.rules->count(w.queue, res, meta.ip_total_len);
    if (res.log_count != 0 || res.logs_overflow) [[unlikely]] {
      log_packet(w, m, meta.l2_len, kNoPort, hook, out_port, res, b.now);
    }
    if (res.action != rules::Action::kAccept) {
      drop(w, m, res.action == rules::Action::kDrop ? DropReason::kRuleDrop : DropReason::kRuleReject);
      return false;
    }
    p.mark = res.mark;
  }
  return true;
}

// Stage 4: route what the router itself sends (replies go back to the
// sender), through OUTPUT and POSTROUTING when rules are loaded.
void route_originated(Worker& w, Burst& b) {
  lookup_routes(*b.fib, b.originated_dst, b.originated_next_hop, b.n_originated);
  for (uint16_t i = 0; i < b.n_originated; ++i) {
    const uint32_t index = b.originated_next_hop[i];
    if (index == route::Fib::kNoRoute || b.fib->next_hop(index).kind != route::NextHopKind::kForward) {
      drop(w, b.originated[i], DropReason::kNoRoute);
      continue;
    }
    const route::NextHop& nh = b.fib->next_hop(index);
    if (b.rules != nullptr && !output_hooks(w, b, i, nh.port)) continue;
    send(w, b, b.originated[i], nh, b.originated_dst[i]);
  }
}

// Packets waiting for ARP: send the resolved, drop the expired, re-ask the rest.
void service_pending(Worker& w, uint64_t now) {
  const Router& r = *w.router;
  size_t kept = 0;
  for (PendingPacket& p : w.pending) {
    auto neighbour = r.neighbours->lookup(p.port, p.next_hop);
    if (neighbour) {
      write_l2(p.mbuf, r.ports[p.port].mac, neighbour->mac);
      tx_enqueue(w, p.port, p.mbuf);
    } else if (now >= p.deadline) {
      drop(w, p.mbuf, DropReason::kNeighbourUnresolved);
    } else {
      request_neighbour(w, p.port, p.next_hop, now);
      w.pending[kept++] = p;
    }
  }
  w.pending.resize(kept);
}


void process(Worker& w, uint16_t in_port, rte_mbuf** pkts, uint16_t n, bool from_peer) {
  Burst b;
  b.in_port = in_port;
  b.from_peer = from_peer;
  b.fib = w.router->fib.load(std::memory_order_acquire);
  b.rules = w.router->rules.load(std::memory_order_acquire);
  b.now = rte_rdtsc();
  const uint64_t neighbours = w.router->neighbours->generation();
  if (w.neighbour.generation != neighbours) [[unlikely]] {
    w.neighbour = NeighbourCache{};
    w.neighbour.generation = neighbours;
  }
  if (b.rules != nullptr) {
    w.flows->begin_burst();
    w.match_state->begin(b.rules, tsc_to_ns(b.now, w.router->tsc_hz));
    receive_and_parse<net::MetaFill::kAll>(w, b, pkts, n);
    track(w, b);
    prerouting(w, b);
  } else {
    receive_and_parse<net::MetaFill::kRouting>(w, b, pkts, n);
  }
  lookup_routes(*b.fib, b.rx_dst, b.rx_next_hop, b.n_rx);
  decide(w, b);
  route_originated(w, b);
}

// Answers the control thread's question about this worker's flows.
void serve_flow_request(Worker& w) {
  FlowRequest& req = w.flow_request;
  const uint64_t now = rte_rdtsc();
  conntrack::WalkProgress progress;
  switch (req.op) {
    case FlowRequest::Op::kList:
      req.flows.clear();
      progress = w.flows->for_each(req.cursor, FlowRequest::kFlowPage, now, [&](const conntrack::Entry& e) {
        if (req.filter.matches(e)) req.flows.push_back(w.flows->info(e, now));
      });
      progress.matched = static_cast<uint32_t>(req.flows.size());
      break;
    case FlowRequest::Op::kDelete:
      progress = w.flows->delete_matching(req.filter, req.cursor, FlowRequest::kFlowPage, now);
      break;
    case FlowRequest::Op::kFlush:
      progress.matched = w.flows->size();
      w.flows->flush();
      progress.done = true;
      break;
  }
  req.next_cursor = progress.next_cursor;
  req.done = progress.done;
  req.matched = progress.matched;
  req.state.store(2, std::memory_order_release);
}

// Packets other workers handed over, grouped by ingress port.
void take_over(Worker& w) {
  const Router& r = *w.router;
  rte_mbuf* pkts[kMaxBurst];
  for (uint16_t peer = 0; peer < r.worker_count; ++peer) {
    if (peer == w.queue) continue;
    const unsigned n = rte_ring_sc_dequeue_burst(r.handover[peer][w.queue], reinterpret_cast<void**>(pkts), r.burst, nullptr);
    unsigned start = 0;
    while (start < n) {
      unsigned end = start + 1;
      while (end < n && pkts[end]->port == pkts[start]->port) ++end;
      uint16_t port = 0;
      while (port < r.port_count && r.ports[port].port_id != pkts[start]->port) ++port;
      if (port == r.port_count) {  // cannot happen: only our ports hand over
        for (unsigned k = start; k < end; ++k) drop(w, pkts[k], DropReason::kNotForUs);
      } else {
        process(w, port, pkts + start, static_cast<uint16_t>(end - start), true);
      }
      start = end;
    }
  }
}

}  // namespace

Worker::Worker(Router& r, uint16_t queue_index, unsigned lcore, const conntrack::TableConfig& flow_config)
    : queue(queue_index), lcore_id(lcore), router(&r) {
  pending.reserve(r.arp_queue);
  icmp_bucket = {r.icmp_bucket_cycles, rte_rdtsc()};  // both start full
  log_bucket = {r.log_bucket_cycles, icmp_bucket.last_tsc};
  conntrack::TableConfig config = flow_config;
  config.owner = static_cast<uint8_t>(queue_index);
  flows = std::make_unique<conntrack::Table>(config);
  nat_ports = std::make_unique<conntrack::PortAllocator>(conntrack::PortSlice{queue_index, r.worker_count},
                                                         rte_rdtsc() + queue_index);
  any_ports = std::make_unique<conntrack::PortAllocator>(conntrack::PortSlice{0, 1}, rte_rdtsc() * 31 + queue_index);
  match_state = std::make_unique<WorkerMatchState>(queue_index, r.recent, rte_rdtsc() * 2654435761u + queue_index);
  flow_request.flows.reserve(FlowRequest::kFlowPage);
}

void worker_process_burst(Worker& w, uint16_t in_port, rte_mbuf** pkts, uint16_t n) {
  process(w, in_port, pkts, n, false);
}

void worker_flush(Worker& w) {
  for (uint16_t port = 0; port < w.router->port_count; ++port) flush_port(w, port);
}

uint32_t worker_poll(Worker& w) {
  const Router& r = *w.router;
  rte_mbuf* pkts[kMaxBurst];
  uint32_t received = 0;
  const bool stateful = r.rules.load(std::memory_order_relaxed) != nullptr;
  const bool peers = stateful && r.worker_count > 1;
  for (uint16_t port = 0; port < r.port_count; ++port) {
    const uint16_t n = rte_eth_rx_burst(r.ports[port].port_id, w.queue, pkts, r.burst);
    if (n == 0) continue;
    received += n;
    // The peers' messages are read after the receive, not before it: a
    // peer queues a flow's redirect stub before it sends the flow's first
    // packet, so a reply in this burst finds its stub already queued. Read
    // before, a worker descheduled between the two (more workers than
    // cores) met a server's SYN/ACK with no stub and dropped it as INVALID.
    if (peers) drain_messages(w, rte_rdtsc());
    worker_process_burst(w, port, pkts, n);
  }
  if (peers && received == 0) drain_messages(w, rte_rdtsc());
  if (peers) take_over(w);
  if (w.flow_request.state.load(std::memory_order_acquire) == 1) [[unlikely]] {
    serve_flow_request(w);
    announce_departures(w);  // a deletion page may hold as many as the table keeps
  }
  if (!w.pending.empty()) [[unlikely]] service_pending(w, rte_rdtsc());
  worker_flush(w);
  if (stateful) {
    // Expiry paced by time (the table once a second); flows with redirect
    // stubs elsewhere take them along, as do those killed or deleted.
    const uint64_t now = rte_rdtsc();
    w.flows->expire(now, w.flows->sweep_due(now));
    announce_departures(w);
  }
  // Nothing read from published tables is held past this point.
  if (r.qsbr != nullptr) rte_rcu_qsbr_quiescent(r.qsbr, w.queue);
  return received;
}

void worker_drain(Worker& w) {
  for (PendingPacket& p : w.pending) rte_pktmbuf_free(p.mbuf);
  w.pending.clear();
  for (uint16_t port = 0; port < w.router->port_count; ++port) {
    for (uint16_t i = 0; i < w.tx[port].count; ++i) rte_pktmbuf_free(w.tx[port].pkts[i]);
    w.tx[port].count = 0;
    w.tx[port].bytes = 0;
  }
}

int worker_main(void* arg) {
  Worker& w = *static_cast<Worker*>(arg);
  const Router& r = *w.router;
  while (!r.stop.load(std::memory_order_relaxed)) {
    if (worker_poll(w) != 0) {
      w.idle_polls = 0;
    } else if (r.idle_sleep_us != 0 && ++w.idle_polls > kIdlePollsBeforeSleep) {
      // Only when idle: a shared test machine needs its cores back.
      rte_delay_us_sleep(r.idle_sleep_us);
    }
  }
  worker_flush(w);
  return 0;
}

}  // namespace dpgate::dataplane
