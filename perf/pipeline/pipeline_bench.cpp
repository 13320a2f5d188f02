// The worker pipeline in one process, timed with the TSC: frames built here
// enter a net_ring RX queue, worker_poll() runs them through the real Runtime
// (parse, conntrack, rules, NAT, route, neighbour, TX) and net_null frees what
// leaves. Unlike a pcap replay, every frame can carry a tuple never seen
// before, so `--mode new` measures the first packet of each connection
// (conntrack miss, nat-table evaluation, DNAT choice, insert) honestly, and
// `--mode established` loops over up to millions of flows without holding
// them in mbufs. Not a test: it prints one JSON object per repeat.
//
// Usage: pipeline_bench --mode l3|established|new [--flows N] [--services N]
//                       [--rules FILE] [--max-flows N] [--packets N]
//                       [--repeats R] [--warmup-loops L] [--nic-ip-cksum 0|1] [--replied 0|1]
//   l3           UDP to 198.18.1.x, no rules: plain routing (--flows tuples)
//   established  TCP ACKs of --flows flows (to --services VIPs if given),
//                every flow seen once before timing (loose pickup creates it)
//   new          TCP SYNs, each a tuple never sent before (up to 16 M)
//   --replied 1  established: after the warm-up each flow gets one reply (from
//                its DNAT endpoint, read from the flow table) on the wan port,
//                so its packets are ESTABLISHED, not NEW-until-reply as in a
//                one-way pcap replay (netfilter's ctinfo, which keeps walking
//                the nat table in dpgate; see perf/README.md)
//   --nic-ip-cksum 1  frames arrive marked IP-checksum-good (a NIC's offload):
//                dpgate then skips its software IPv4 header checksum check
// Cycles are counted around worker_poll() only: building frames and copying
// them into mbufs (what net_pcap's infinite_rx does in its RX burst) is not
// dpgate's work and stays outside; bursts preempted by other processes are
// left out (see Timing). Run as root (EAL, --no-huge).
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dpgate/control/runtime.hpp"
#include "dpgate/conntrack/table.hpp"
#include "dpgate/net/builder.hpp"

using namespace dpgate;

namespace {

constexpr uint32_t kFrameLen = 60;  // a 64-byte Ethernet frame without its FCS
constexpr uint16_t kBurst = 32;

struct Options {
  std::string mode = "l3";
  uint32_t flows = 1024;
  uint32_t services = 0;
  std::string rules;
  uint32_t max_flows = 0;
  uint64_t packets = 2'000'000;
  unsigned repeats = 3;
  unsigned warmup_loops = 1;
  bool nic_ip_cksum = false;  // mark frames RTE_MBUF_F_RX_IP_CKSUM_GOOD, as a NIC with the offload would
  bool replied = false;       // established: every flow sees one reply before timing (ctstate ESTABLISHED)
};

[[noreturn]] void usage() {
  std::fputs("usage: pipeline_bench --mode l3|established|new [--flows N] [--services N] [--rules FILE]\n"
             "                      [--max-flows N] [--packets N] [--repeats R] [--warmup-loops L]\n"
             "                      [--nic-ip-cksum 0|1] [--replied 0|1]\n",
             stderr);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--mode") o.mode = v;
    else if (a == "--flows") o.flows = static_cast<uint32_t>(std::strtoul(v, nullptr, 0));
    else if (a == "--services") o.services = static_cast<uint32_t>(std::strtoul(v, nullptr, 0));
    else if (a == "--rules") o.rules = v;
    else if (a == "--max-flows") o.max_flows = static_cast<uint32_t>(std::strtoul(v, nullptr, 0));
    else if (a == "--packets") o.packets = std::strtoull(v, nullptr, 0);
    else if (a == "--repeats") o.repeats = static_cast<unsigned>(std::strtoul(v, nullptr, 0));
    else if (a == "--warmup-loops") o.warmup_loops = static_cast<unsigned>(std::strtoul(v, nullptr, 0));
    else if (a == "--nic-ip-cksum") o.nic_ip_cksum = std::string(v) == "1";
    else if (a == "--replied") o.replied = std::string(v) == "1";
    else usage();
  }
  if (o.mode != "l3" && o.mode != "established" && o.mode != "new") usage();
  if (o.flows == 0 || o.flows > 250u * 64000u) usage();
  return o;
}

std::string dotted(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
         "." + std::to_string(a & 255);
}

// Tuple i as perf/gen-pcap.py numbers them: sources 198.18.0.2-251, ports
// from 1024; destinations 198.18.1.x (plain routing) or service VIPs.
std::vector<uint8_t> frame(const Options& o, uint64_t i, const net::MacAddr& dst_mac, bool syn) {
  const uint32_t src = (198u << 24) | (18u << 16) | (2 + i % 250);
  const auto sport = static_cast<uint16_t>(1024 + (i / 250) % 64000);
  net::PacketBuilder b;
  b.eth(net::MacAddr{{0x02, 0, 0, 0, 0, 2}}, dst_mac);
  if (o.mode == "l3") {
    const uint32_t dst = (198u << 24) | (18u << 16) | (1u << 8) | (1 + (i * 7) % 254);
    b.ipv4(dotted(src), dotted(dst)).udp(sport, static_cast<uint16_t>(5001 + i % 16));
    b.payload(std::vector<uint8_t>(kFrameLen - 14 - 20 - 8, 0x5a));
  } else {
    const uint32_t dst = o.services != 0 ? (198u << 24) | (19u << 16) | static_cast<uint32_t>(1 + i % o.services)
                                         : (198u << 24) | (18u << 16) | (1u << 8) | (1 + (i * 7) % 254);
    const uint16_t dport = o.services != 0 ? 80 : static_cast<uint16_t>(5001 + i % 16);
    b.ipv4(dotted(src), dotted(dst)).tcp(sport, dport, syn ? 0x02 : 0x10, 1000);
    b.payload(std::vector<uint8_t>(kFrameLen - 14 - 20 - 20, 0x5a));
  }
  return b.build();
}

struct Bench {
  control::Runtime* rt;
  dataplane::Worker* w;
  rte_ring* rx;
  rte_mempool* pool;
  uint64_t ol_flags;
};

// What one timed run measured. A burst that took over 10x the median was
// preempted by another process on this shared machine (or hit a page fault):
// it is left out, with its packets, and counted.
struct Timing {
  uint64_t packets = 0;  // in the bursts kept
  uint64_t cycles = 0;   // TSC cycles in worker_poll() over the bursts kept
  uint64_t preempted_bursts = 0;
  double median_burst_cycles_per_pkt = 0;
};

// Feeds frames [first, first + n) of `frames` (each kFrameLen bytes, taken
// modulo `count`) burst by burst, timing each worker_poll().
Timing feed(Bench& b, const uint8_t* frames, uint64_t count, uint64_t first, uint64_t n) {
  std::vector<uint64_t> burst_cycles;
  burst_cycles.reserve(n / kBurst + 1);
  rte_mbuf* ms[kBurst];
  for (uint64_t done = 0; done < n;) {
    const auto k = static_cast<uint16_t>(std::min<uint64_t>(kBurst, n - done));
    if (rte_pktmbuf_alloc_bulk(b.pool, ms, k) != 0) {
      std::fputs("pipeline_bench: mbuf pool empty\n", stderr);
      std::exit(1);
    }
    for (uint16_t j = 0; j < k; ++j) {
      const uint8_t* f = frames + ((first + done + j) % count) * kFrameLen;
      std::memcpy(rte_pktmbuf_append(ms[j], kFrameLen), f, kFrameLen);
      ms[j]->ol_flags |= b.ol_flags;
    }
    rte_ring_sp_enqueue_burst(b.rx, reinterpret_cast<void**>(ms), k, nullptr);
    const uint64_t t0 = rte_rdtsc_precise();
    dataplane::worker_poll(*b.w);
    burst_cycles.push_back(rte_rdtsc_precise() - t0);
    done += k;
  }
  Timing t;
  if (burst_cycles.empty()) return t;
  std::vector<uint64_t> sorted = burst_cycles;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const uint64_t median = sorted[sorted.size() / 2];
  for (size_t i = 0; i < burst_cycles.size(); ++i) {
    const uint64_t k = std::min<uint64_t>(kBurst, n - i * kBurst);
    if (burst_cycles[i] > 10 * median) {
      ++t.preempted_bursts;
      continue;
    }
    t.cycles += burst_cycles[i];
    t.packets += k;
  }
  t.median_burst_cycles_per_pkt = double(median) / kBurst;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  // No shared config, IPC or telemetry socket: the EAL leaves its runtime
  // directory empty, and main() removes it at the end (one was left in
  // /var/run/dpdk per run).
  const std::string prefix = "pbench" + std::to_string(getpid());
  std::vector<std::string> eal_args = {"pipeline_bench", "--no-huge", "--no-pci", "-m", "3072", "-l", "0",
                                       "--no-shconf", "--no-telemetry", "--file-prefix", prefix,
                                       "--log-level=lib.eal:error", "--vdev", "net_null0,no-rx=1"};
  std::vector<char*> eal_argv;
  for (auto& s : eal_args) eal_argv.push_back(s.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fputs("pipeline_bench: EAL init failed (root?)\n", stderr);
    return 1;
  }
  rte_ring* rx = rte_ring_create("benchrx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("benchtx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (rte_eth_from_rings("benchlan", &rx, 1, &tx, 1, 0) < 0) return 1;

  uint32_t max_flows = o.max_flows;
  if (max_flows == 0) max_flows = std::max<uint32_t>(1u << 20, o.mode == "new" ? 1u << 20 : 2 * o.flows);
  std::string text =
      "workers = 1;\nidle_sleep_us = 0;\nmbuf_pool_size = 8191;\n"
      "ports = (\n"
      "  { name = \"lan\"; device = \"net_ring_benchlan\"; addresses = [ \"198.18.0.1/24\" ]; },\n"
      "  { name = \"wan\"; device = \"net_null0\"; addresses = [ \"198.18.101.1/24\" ]; }\n);\n"
      "routes = ( { prefix = \"198.18.1.0/24\"; gateway = \"198.18.101.2\"; port = \"wan\"; } );\n"
      "neighbours = ( { address = \"198.18.101.2\"; mac = \"02:00:00:00:01:02\"; port = \"wan\"; } );\n"
      "conntrack = { max_flows = " + std::to_string(max_flows) + "; };\n";
  if (!o.rules.empty()) text += "rules = \"" + o.rules + "\";\n";
  auto cfg = control::load_config_text(text, "pipeline_bench.conf");
  if (auto* e = std::get_if<control::ConfigError>(&cfg)) {
    std::fprintf(stderr, "pipeline_bench: %s\n", e->to_string().c_str());
    return 1;
  }
  auto created = control::Runtime::create(std::get<control::Config>(cfg));
  if (auto* e = std::get_if<std::string>(&created)) {
    std::fprintf(stderr, "pipeline_bench: %s\n", e->c_str());
    return 1;
  }
  auto rt = std::move(std::get<std::unique_ptr<control::Runtime>>(created));
  if (!o.rules.empty()) {
    if (auto err = rt->reload_rules()) {
      std::fprintf(stderr, "pipeline_bench: rules: %s\n", err->c_str());
      return 1;
    }
  }
  Bench b{rt.get(), rt->workers()[0].get(), rx, rt->router().pool,
          o.nic_ip_cksum ? RTE_MBUF_F_RX_IP_CKSUM_GOOD : 0};
  const net::MacAddr mac = rt->router().ports[0].mac;

  // New connections need a tuple per packet; the others loop over --flows.
  const bool fresh = o.mode == "new";
  const uint64_t per_repeat = o.packets;
  const uint64_t count = fresh ? per_repeat * (o.repeats + o.warmup_loops) : o.flows;
  if (count > 250ull * 64000ull) {
    std::fputs("pipeline_bench: more new tuples than 250 sources x 64000 ports\n", stderr);
    return 2;
  }
  std::vector<uint8_t> frames(count * kFrameLen);
  for (uint64_t i = 0; i < count; ++i) {
    const auto f = frame(o, i, mac, fresh);
    std::memcpy(frames.data() + i * kFrameLen, f.data(), kFrameLen);
  }

  const uint64_t hz = rte_get_tsc_hz();
  auto& c = b.w->counters;
  uint64_t next = 0;
  // Warm-up: every established flow once (and the caches), or a first slice of new tuples.
  const uint64_t warm = fresh ? per_repeat * o.warmup_loops : count * o.warmup_loops;
  feed(b, frames.data(), count, next, warm);
  if (fresh) next += warm;
  if (o.replied && o.mode == "established") {
    // Replies enter on the wan port; the clients have no ARP entry, so they
    // wait for ARP and are dropped: conntrack has seen them, which is the point.
    std::vector<net::FiveTuple> replies;
    conntrack::WalkProgress walk;
    do {
      walk = b.w->flows->for_each(walk.next_cursor, 65536, rte_rdtsc(),
                                  [&](const conntrack::Entry& e) { replies.push_back(e.reply()); });
    } while (!walk.done);
    const net::MacAddr wan_mac = rt->router().ports[1].mac;
    rte_mbuf* ms[kBurst];
    for (size_t i = 0; i < replies.size(); i += kBurst) {
      const auto k = static_cast<uint16_t>(std::min<size_t>(kBurst, replies.size() - i));
      if (rte_pktmbuf_alloc_bulk(b.pool, ms, k) != 0) return 1;
      for (uint16_t j = 0; j < k; ++j) {
        const net::FiveTuple& t = replies[i + j];
        net::PacketBuilder pb;
        pb.eth(net::MacAddr{{0x02, 0, 0, 0, 1, 2}}, wan_mac)
            .ipv4(dotted(net::to_host(t.src.v4())), dotted(net::to_host(t.dst.v4())))
            .tcp(net::to_host(t.src_port), net::to_host(t.dst_port), 0x10, 1)
            .payload(std::vector<uint8_t>(kFrameLen - 14 - 20 - 20, 0x5a));
        const auto f = pb.build();
        std::memcpy(rte_pktmbuf_append(ms[j], kFrameLen), f.data(), kFrameLen);
      }
      dataplane::worker_process_burst(*b.w, 1, ms, k);
      dataplane::worker_flush(*b.w);
      dataplane::worker_drain(*b.w);
    }
  }
  for (unsigned r = 1; r <= o.repeats; ++r) {
    const uint64_t fwd0 = c.forwarded.get();
    uint64_t drops0 = 0;
    for (const auto& d : c.drops) drops0 += d.get();
    const Timing t = feed(b, frames.data(), count, next, per_repeat);
    if (fresh) next += per_repeat;
    uint64_t drops = 0;
    for (const auto& d : c.drops) drops += d.get();
    const uint64_t fwd = c.forwarded.get() - fwd0;
    const double cpp = double(t.cycles) / double(t.packets);
    std::printf("{\"mode\":\"%s\",\"flows\":%u,\"services\":%u,\"rules\":\"%s\",\"max_flows\":%u,\"repeat\":%u,"
                "\"packets\":%llu,\"forwarded\":%llu,\"dropped\":%llu,\"ct_entries\":%u,\"early_dropped\":%llu,"
                "\"replied\":%d,\"nic_ip_cksum\":%d,\"preempted_bursts\":%llu,\"median_burst_cycles_per_pkt\":%.1f,"
                "\"cycles_per_pkt\":%.1f,\"mpps_per_core\":%.3f}\n",
                o.mode.c_str(), o.flows, o.services, o.rules.c_str(), max_flows, r,
                static_cast<unsigned long long>(per_repeat), static_cast<unsigned long long>(fwd),
                static_cast<unsigned long long>(drops - drops0), b.w->flows->size(),
                static_cast<unsigned long long>(b.w->flows->stats().early_dropped.get()), o.replied ? 1 : 0,
                o.nic_ip_cksum ? 1 : 0,
                static_cast<unsigned long long>(t.preempted_bursts), t.median_burst_cycles_per_pkt, cpp,
                double(hz) / cpp / 1e6);
    std::fflush(stdout);
  }
  rt.reset();
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  rmdir(runtime_dir.c_str());
  return 0;
}
