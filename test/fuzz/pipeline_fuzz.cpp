// The real worker pipeline on arbitrary frames: each fuzz input is a few
// frames (ring_router.hpp's record format) put on the RX rings of two net_ring
// ports, polled through worker_poll(), and everything transmitted is checked:
// every output frame is either one of the inputs forwarded (TTL-1, new MACs,
// nothing else changed) or a well-formed ARP or ICMP packet the router
// originates in answer to one of them. After each input the mbuf pool must be
// full again: no path may leak or double-free an mbuf.
//
// Input mbufs are copied so the frame ends on an ASan granule and the rest of
// the data room is poisoned: a read or write past the frame is reported even
// though DPDK's memory is not ASan's.
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <sanitizer/asan_interface.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dpgate/control/runtime.hpp"
#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"
#include "invariant.hpp"
#include "ring_router.hpp"

using namespace dpgate;
using fuzz::invariant;
using Frame = std::vector<uint8_t>;

namespace {

struct Harness {
  fuzz::RingPorts rings;
  std::unique_ptr<control::Runtime> runtime;
};

Harness* g_harness = nullptr;

[[noreturn]] void setup_failed(const std::string& why) {
  std::fprintf(stderr, "pipeline_fuzz: setup: %s\n", why.c_str());
  std::exit(1);
}

void set_up() {
  std::array<const char*, 8> eal_args = {"pipeline_fuzz", "--no-huge", "--no-pci", "-m", "256",
                                         "--no-shconf", "--log-level=*:error", "-l0"};
  if (rte_eal_init(static_cast<int>(eal_args.size()), const_cast<char**>(eal_args.data())) < 0) {
    setup_failed("rte_eal_init failed");
  }
  auto* h = new Harness;
  if (auto err = fuzz::open_ring_ports(h->rings)) setup_failed(*err);
  auto cfg = control::load_config_text(fuzz::kRingRouterConfig, "ring_router.hpp");
  if (auto* e = std::get_if<control::ConfigError>(&cfg)) setup_failed(e->to_string());
  auto rt = control::Runtime::create(std::get<control::Config>(cfg));
  if (auto* e = std::get_if<std::string>(&rt)) setup_failed(*e);
  h->runtime = std::move(std::get<std::unique_ptr<control::Runtime>>(rt));
  g_harness = h;
}

// Back to the state after start-up: no learned neighbours, no ARP request
// remembered, a full ICMP bucket. Makes every input reproducible alone.
void reset(control::Runtime& rt) {
  auto& neighbours = *rt.router().neighbours;
  for (const auto& row : neighbours.rows()) {
    if (row.neighbour.state != route::NeighbourState::kStatic) neighbours.erase(row.port, row.ip);
  }
  auto& w = *rt.workers()[0];
  w.arp_requests = {};
  w.icmp_bucket.credit = rt.router().icmp_bucket_cycles;
}

// An mbuf holding `f`, ending on an 8-byte boundary, its tailroom poisoned.
rte_mbuf* frame_mbuf(rte_mempool* pool, const Frame& f) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  invariant(m != nullptr, "the pool has an mbuf for the input (an earlier input leaked)");
  const uint16_t room = static_cast<uint16_t>(m->buf_len - RTE_PKTMBUF_HEADROOM - 8);
  const uint16_t len = static_cast<uint16_t>(std::min<size_t>(f.size(), room));
  const auto end = reinterpret_cast<uintptr_t>(m->buf_addr) + RTE_PKTMBUF_HEADROOM + len;
  m->data_off = static_cast<uint16_t>(RTE_PKTMBUF_HEADROOM + (8 - end % 8) % 8);
  auto* data = rte_pktmbuf_mtod(m, uint8_t*);
  rte_pktmbuf_append(m, len);
  if (len != 0) std::memcpy(data, f.data(), len);
  uint8_t* tail = rte_pktmbuf_mtod_offset(m, uint8_t*, len);
  ASAN_POISON_MEMORY_REGION(tail, static_cast<uint8_t*>(m->buf_addr) + m->buf_len - tail);
  return m;
}

void unpoison(rte_mbuf* m) { ASAN_UNPOISON_MEMORY_REGION(m->buf_addr, m->buf_len); }

struct Input {
  uint16_t port;
  Frame frame;
  net::PacketMeta meta;
  bool parsed;  // a valid IPv4 or ARP frame
};

const uint8_t* ip_of(const Input& in) { return in.frame.data() + in.meta.l2_len; }

uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool router_owns(const dataplane::Router& r, uint32_t ip) {
  for (uint16_t p = 0; p < r.port_count; ++p) {
    if (r.ports[p].owns(ip)) return true;
  }
  return false;
}

// `out` (IPv4 header at `ip`, `len` bytes) is input `in` forwarded: only TTL
// (down by one) and the header checksum differ.
bool is_forwarded(const uint8_t* ip, uint32_t len, const Input& in) {
  if (!in.parsed || in.meta.l3 != net::L3Kind::kIpv4 || len != in.meta.ip_total_len) return false;
  const uint8_t* orig = ip_of(in);
  return std::memcmp(ip, orig, 8) == 0 && ip[8] + 1 == orig[8] && ip[9] == orig[9] &&
         std::memcmp(ip + 12, orig + 12, len - 12) == 0;
}

void check_icmp_originated(const uint8_t* ip, uint32_t ihl, uint32_t len, const std::vector<Input>& inputs) {
  const uint8_t* icmp = ip + ihl;
  invariant(len - ihl >= 8, "an originated ICMP message has its 8-byte header");
  invariant(net::checksum(icmp, len - ihl) == 0, "an originated ICMP message has a valid checksum");
  const uint8_t type = icmp[0];
  if (type == 0) {
    for (const auto& in : inputs) {
      if (!in.parsed || in.meta.l3 != net::L3Kind::kIpv4 || in.meta.ip_total_len != len) continue;
      const uint8_t* req = ip_of(in);
      if (req[in.meta.l3_len] == 8 && std::memcmp(ip + 12, req + 16, 4) == 0 && std::memcmp(ip + 16, req + 12, 4) == 0 &&
          std::memcmp(icmp + 4, req + in.meta.l3_len + 4, len - ihl - 4) == 0) {
        return;
      }
    }
    invariant(false, "an echo reply answers an echo request among the inputs");
  }
  invariant(type == 3 || type == 11, "the router originates only echo replies, Unreachable and Time Exceeded");
  invariant(len <= 576, "an ICMP error fits in 576 bytes (RFC 1812 4.3.2.3)");
  const uint8_t* quote = icmp + 8;
  const uint32_t quoted = len - ihl - 8;
  for (const auto& in : inputs) {
    if (!in.parsed || in.meta.l3 != net::L3Kind::kIpv4) continue;
    const uint8_t* orig = ip_of(in);
    if (quoted == std::min<uint32_t>(in.meta.ip_total_len, 548) && std::memcmp(quote, orig, quoted) == 0 &&
        std::memcmp(ip + 16, orig + 12, 4) == 0) {
      invariant(in.meta.fragment != net::Fragment::kLater, "no ICMP error about a later fragment");
      const uint8_t quoted_type = orig[in.meta.l3_len];
      const bool quoted_error = quoted_type == 3 || quoted_type == 4 || quoted_type == 5 || quoted_type == 11 ||
                                quoted_type == 12;
      invariant(!(in.meta.tuple.proto == net::kProtoIcmp && quoted_error),
                "no ICMP error about an ICMP error");
      return;
    }
  }
  invariant(false, "an ICMP error quotes one of the inputs and goes back to its source");
}

void check_arp(const Frame& f, uint16_t port, const dataplane::PortInfo& info, const std::vector<Input>& inputs) {
  net::PacketMeta m;
  invariant(net::parse_frame(f.data(), static_cast<uint32_t>(f.size()), m) == net::DropReason::kNone,
            "an ARP frame the router sends parses");
  const uint8_t* arp = f.data() + m.l2_len;
  invariant(arp[0] == 0 && arp[1] == 1 && arp[2] == 8 && arp[3] == 0 && arp[4] == 6 && arp[5] == 4,
            "ARP for Ethernet/IPv4");
  invariant(std::memcmp(arp + 8, info.mac.bytes.data(), 6) == 0, "the ARP sender is the port's MAC");
  invariant(info.owns(load32(arp + 14)), "the ARP sender address is the port's own");
  const uint16_t op = static_cast<uint16_t>((arp[6] << 8) | arp[7]);
  if (op == 1) {
    invariant(!m.has_vlan, "ARP requests are untagged");
    invariant(std::all_of(f.begin(), f.begin() + 6, [](uint8_t b) { return b == 0xff; }), "ARP requests are broadcast");
    return;
  }
  invariant(op == 2, "the router sends ARP requests and replies only");
  for (const auto& in : inputs) {
    if (!in.parsed || in.port != port || in.meta.l3 != net::L3Kind::kArp) continue;
    const uint8_t* req = ip_of(in);
    if (req[7] == 1 && std::memcmp(arp + 18, req + 8, 10) == 0 && std::memcmp(f.data(), req + 8, 6) == 0 &&
        std::memcmp(arp + 14, req + 24, 4) == 0) {
      return;
    }
  }
  invariant(false, "an ARP reply answers a request among the inputs, to the asker");
}

void check_output(const Frame& f, uint16_t port, const dataplane::Router& r, const std::vector<Input>& inputs) {
  const dataplane::PortInfo& info = r.ports[port];
  invariant(f.size() >= net::kEthHeaderLen, "an output frame has an Ethernet header");
  invariant(std::memcmp(f.data() + 6, info.mac.bytes.data(), 6) == 0, "the source MAC is the egress port's");
  const uint16_t type = static_cast<uint16_t>((f[12] << 8) | f[13]);
  const bool tagged_arp = type == net::kEtherTypeVlan && f.size() >= 18 && f[16] == 0x08 && f[17] == 0x06;
  if (type == net::kEtherTypeArp || tagged_arp) return check_arp(f, port, info, inputs);
  invariant(type == net::kEtherTypeIpv4, "the router sends untagged IPv4 or ARP only");
  invariant(!(f[0] & 1), "IPv4 leaves to a unicast MAC");
  invariant(!std::all_of(f.begin(), f.begin() + 6, [](uint8_t b) { return b == 0; }), "the destination MAC is set");
  net::PacketMeta m;
  const net::DropReason reason = net::parse_frame(f.data(), static_cast<uint32_t>(f.size()), m);
  invariant(reason == net::DropReason::kNone, "every IPv4 frame the router sends parses cleanly");
  invariant(f.size() == net::kEthHeaderLen + m.ip_total_len, "no padding or trailing bytes after the datagram");
  invariant(m.ip_total_len <= info.mtu, "nothing leaves bigger than the egress MTU");
  invariant(m.ttl >= 1, "nothing leaves with TTL 0");
  const uint8_t* ip = f.data() + net::kEthHeaderLen;
  for (const auto& in : inputs) {
    if (is_forwarded(ip, m.ip_total_len, in)) return;
  }
  invariant(m.tuple.proto == net::kProtoIcmp, "what is not forwarded is ICMP the router originates");
  invariant(router_owns(r, net::to_host(m.tuple.src.v4())), "originated ICMP comes from one of the router's addresses");
  check_icmp_originated(ip, m.l3_len, m.ip_total_len, inputs);
}

uint64_t accounted(const dataplane::WorkerCounters& c) {
  uint64_t n = c.forwarded.get() + c.local_delivered.get();
  for (const auto& d : c.drops) n += d.get();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_up();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = *g_harness;
  control::Runtime& rt = *h.runtime;
  dataplane::Router& r = rt.router();
  dataplane::Worker& w = *rt.workers()[0];
  reset(rt);

  std::vector<Input> inputs;
  std::vector<rte_mbuf*> poisoned;
  const uint64_t accounted_before = accounted(w.counters);
  uint64_t tx_before = 0;
  for (uint16_t p = 0; p < r.port_count; ++p) tx_before += w.counters.port[p].tx_packets.get();

  for (auto& rec : fuzz::decode_records(data, size)) {
    if (rec.to_port_mac && rec.frame.size() >= 6) {
      std::memcpy(rec.frame.data(), r.ports[rec.port].mac.bytes.data(), 6);
    }
    rte_mbuf* m = frame_mbuf(r.pool, rec.frame);
    rec.frame.resize(rte_pktmbuf_data_len(m));
    Input in{rec.port, std::move(rec.frame), {}, false};
    in.parsed = net::parse_frame(in.frame.data(), static_cast<uint32_t>(in.frame.size()), in.meta) == net::DropReason::kNone &&
                in.meta.l3 != net::L3Kind::kIpv6;
    inputs.push_back(std::move(in));
    poisoned.push_back(m);
    invariant(rte_ring_enqueue(h.rings.rx[rec.port], m) == 0, "the RX ring takes the frame");
  }

  // Twice: the second poll sends what waited for an ARP reply in the input.
  for (int round = 0; round < 2; ++round) {
    dataplane::worker_poll(w);
    rt.service(rte_get_tsc_cycles());
  }
  for (rte_mbuf* m : poisoned) unpoison(m);

  uint64_t sent = 0;
  for (uint16_t p = 0; p < r.port_count; ++p) {
    void* obj;
    while (rte_ring_dequeue(h.rings.tx[p], &obj) == 0) {
      auto* m = static_cast<rte_mbuf*>(obj);
      invariant(m->nb_segs == 1 && rte_pktmbuf_data_len(m) == rte_pktmbuf_pkt_len(m), "one segment per frame");
      const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
      check_output(Frame(d, d + rte_pktmbuf_data_len(m)), p, r, inputs);
      rte_pktmbuf_free(m);
      ++sent;
    }
  }
  uint64_t tx_after = 0;
  for (uint16_t p = 0; p < r.port_count; ++p) tx_after += w.counters.port[p].tx_packets.get();
  invariant(tx_after - tx_before == sent, "the TX counters count exactly what was sent");
  invariant(accounted(w.counters) - accounted_before >= inputs.size(),
            "every received frame is counted as forwarded, delivered or dropped");

  dataplane::worker_drain(w);
  invariant(rte_mempool_avail_count(r.pool) == r.pool->size, "every mbuf is back in the pool");
  return 0;
}
