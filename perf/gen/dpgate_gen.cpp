// dpgate-gen: dpgate's own DPDK traffic generator, for a dpgate running as
// another process (net_memif between the two, or any DPDK port). It builds
// frames in preallocated mbufs (every TX mbuf is written with the frame
// template once, at start; a packet then rewrites only its tuple, TCP flags,
// stamp and checksums), sends them at a TSC-paced rate in bursts of 32,
// receives what comes back on the RX port and measures loss and latency from
// the stamp each frame carries (magic + trial id, sequence number, low 32
// bits of the TSC at transmission; both processes read the same TSC).
//
// A run is either one trial at --rate, or (--search) an RFC 2544 binary
// search for the highest rate a trial passes with zero loss. Results are JSON
// lines on stdout; diagnostics go to stderr. Single-threaded: everything runs
// on the main lcore. `dpgate-gen -- --help` prints the options.
#include <rte_alarm.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint32_t kFcs = 4;  // RFC 2544 frame sizes count the FCS; mbufs do not carry it
constexpr uint32_t kMinFrame = 64;
constexpr uint32_t kMaxFrame = 1518;
constexpr uint16_t kMagic =
    0xD6A7;  // high half of the stamp's first word; the low half is the trial
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpAck = 0x10;

// clang-format off
constexpr char kUsage[] =
    "usage: dpgate-gen [EAL options] -- [options]\n"
    "Ports (DPDK port ids, in EAL probe order):\n"
    "  --port N                 send and receive on port N\n"
    "  --tx-port N --rx-port M  send on N, receive on M (default 0 and 1, or 0 and 0 with\n"
    "                           one port; --port-tx/--port-rx are the same)\n"
    "  --src-mac MAC            source MAC (default: the TX port's own)\n"
    "  --dst-mac MAC            destination MAC: the device under test's ingress port\n"
    "                           (default 02:00:00:00:00:01, what perf/zero-loss.sh gives dpgate)\n"
    "Traffic:\n"
    "  --size BYTES             Ethernet frame size with FCS, 64..1518 (default 64)\n"
    "  --proto tcp|udp          (default udp)\n"
    "  --flows F                established flows: a fixed tuple set sent round-robin\n"
    "                           (default 1024)\n"
    "  --new-ratio R            fraction 0..1 of packets that open a new flow, each a tuple never\n"
    "                           sent before (TCP: a SYN; the others are ACKs); 1 = every packet\n"
    "  --src A[-B] | NET/LEN    source addresses (default 198.18.0.2-198.18.0.251); a prefix\n"
    "                           means its hosts\n"
    "  --sport P[-Q]            source ports (default 1024-65535); established flows take the\n"
    "                           lowest, new flows cycle through the rest (src x ports tuples)\n"
    "  --dst A[-B] | NET/LEN    destination addresses (default 198.18.1.1-198.18.1.254)\n"
    "  --dport P[-Q]            destination ports (default 5001-5016)\n"
    "  --services K             destinations are K service VIPs instead of --dst/--dport:\n"
    "  --service-base ADDR | NET/LEN  the first VIP, or the first host of NET/LEN as\n"
    "                           gen-rules.py --service-net counts (default 198.19.0.1)\n"
    "  --service-port P         the services' port (default 80)\n"
    "Rate and time:\n"
    "  --rate PPS | --rate-mpps X  offered rate; 0 = as fast as the DUT takes frames: its full\n"
    "                           ring holds frames back (\"pushback\": the share of sends it cut\n"
    "                           short; under 1 %: generator_limited, the DUT kept up) (default 0)\n"
    "  --duration SEC           one trial's sending time (default 5)\n"
    "  --drain-ms MS            receive this long after the last packet of a trial (default 100)\n"
    "  --learn-rate PPS         before the first trial send every established flow once at this\n"
    "                           rate, so the DUT has them (default 500000; 0 = no learning pass)\n"
    "  --progress               a JSON line per second while a trial runs\n"
    "Zero-loss search (RFC 2544 throughput):\n"
    "  --search                 binary search for the highest rate with loss <= --loss\n"
    "  --search-max PPS         upper bound (default: first trial as fast as possible, its\n"
    "                           offered rate is the bound)\n"
    "  --search-min PPS         lower bound (default 1000)\n"
    "  --loss RATIO             acceptable loss ratio (default 0: zero loss)\n"
    "  --resolution R           stop when (hi - lo) / hi <= R (default 0.02)\n"
    "  --max-trials N           (default 14)\n"
    "  --max-time SEC           stop starting trials after SEC seconds (default 120)\n"
    "  --retries N              a failed trial is repeated up to N times before it counts as\n"
    "                           failed (a shared machine preempts; default 0)\n"
    "  --pause-ms MS            idle time between trials (default 300)\n"
    "  --connect-timeout SEC    wait for ports to start and links to come up (default 15)\n"
    "  --hold                   after the results, stay connected (idle) until a port's link goes\n"
    "                           down or SIGINT/SIGTERM: stop the DUT first. DPDK 22.11's memif\n"
    "                           server unmaps its rings when the client leaves, under a worker\n"
    "                           that may still be polling them\n"
    "Output: JSON lines on stdout: {\"kind\":\"trial\",...} per trial, {\"kind\":\"second\",...}\n"
    "with --progress, and last {\"kind\":\"result\",...} (one trial) or\n"
    "{\"kind\":\"search\",...}.\n"
    "Example (dpgate serving memif sockets, see perf/zero-loss.sh):\n"
    "  dpgate-gen --no-huge --no-pci -m 512 --file-prefix gen -l 0 \\\n"
    "    --vdev net_memif0,role=client,socket=/tmp/lan.sock,socket-abstract=no \\\n"
    "    --vdev net_memif1,role=client,socket=/tmp/wan.sock,socket-abstract=no \\\n"
    "    -- --proto tcp --services 10 --new-ratio 1 --search\n";
// clang-format on

volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) {
  g_stop = 1;
}

// ---------------------------------------------------------------- options

struct Range {
  uint32_t lo = 0, hi = 0;  // host order, inclusive
  uint64_t size() const { return uint64_t{hi} - lo + 1; }
};

struct Options {
  std::optional<uint16_t> tx_port, rx_port;
  std::optional<rte_ether_addr> src_mac;
  rte_ether_addr dst_mac{{0x02, 0, 0, 0, 0, 0x01}};
  uint32_t size = 64;
  uint8_t proto = IPPROTO_UDP;
  uint32_t flows = 1024;
  double new_ratio = 0.0;
  Range src{(198u << 24) | (18u << 16) | 2, (198u << 24) | (18u << 16) | 251};
  Range sport{1024, 65535};
  Range dst{(198u << 24) | (18u << 16) | (1u << 8) | 1,
            (198u << 24) | (18u << 16) | (1u << 8) | 254};
  Range dport{5001, 5016};
  uint32_t services = 0;
  uint32_t service_base = (198u << 24) | (19u << 16) | 1;
  uint16_t service_port = 80;
  double rate = 0;  // packets per second; 0 = unpaced
  double duration = 5;
  uint32_t drain_ms = 100;
  double learn_rate = 500000;
  bool progress = false;
  bool search = false;
  bool hold = false;
  double search_max = 0, search_min = 1000;
  double loss = 0, resolution = 0.02;
  unsigned max_trials = 14, retries = 0;
  double max_time = 120;
  uint32_t pause_ms = 300;
  double connect_timeout = 15;
};

[[noreturn]] void bad(const std::string& what) {
  std::fprintf(stderr, "dpgate-gen: %s\n(dpgate-gen -- --help lists the options)\n", what.c_str());
  std::exit(2);
}

std::optional<uint32_t> parse_ipv4(std::string_view s) {
  uint32_t a = 0;
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return std::nullopt;
    uint32_t v = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 4) {
      v = v * 10 + static_cast<uint32_t>(s[i++] - '0');
      ++digits;
    }
    if (v > 255) return std::nullopt;
    a = (a << 8) | v;
    if (++parts < 4) {
      if (i >= s.size() || s[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i != s.size()) return std::nullopt;
  return a;
}

double parse_number(const std::string& opt, const char* v, double min, double max) {
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v, &end);
  if (errno != 0 || end == v || *end != '\0' || d < min || d > max) {
    bad(opt + ": expected a number in " + std::to_string(min) + ".." + std::to_string(max) +
        ", found '" + v + "'");
  }
  return d;
}

uint32_t parse_uint(const std::string& opt, const char* v, uint32_t min, uint32_t max) {
  const double d = parse_number(opt, v, min, max);
  if (d != static_cast<double>(static_cast<uint32_t>(d)))
    bad(opt + ": expected an integer, found '" + v + "'");
  return static_cast<uint32_t>(d);
}

// A-B, a single address, or NET/LEN for the prefix's hosts (network and
// broadcast addresses left out below /31).
Range parse_addr_range(const std::string& opt, std::string_view v) {
  if (const size_t slash = v.find('/'); slash != std::string_view::npos) {
    const auto net = parse_ipv4(v.substr(0, slash));
    const std::string len_text(v.substr(slash + 1));
    const uint32_t len = parse_uint(opt, len_text.c_str(), 0, 32);
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    if (!net || (*net & ~mask) != 0)
      bad(opt + ": expected NET/LEN with no host bits, found '" + std::string(v) + "'");
    if (len >= 31) return {*net, *net | ~mask};
    return {*net + 1, (*net | ~mask) - 1};
  }
  const size_t dash = v.find('-');
  auto lo = parse_ipv4(v.substr(0, dash));
  auto hi = dash == std::string_view::npos ? lo : parse_ipv4(v.substr(dash + 1));
  if (!lo || !hi || *hi < *lo)
    bad(opt + ": expected ADDR or ADDR-ADDR (low first), found '" + std::string(v) + "'");
  return {*lo, *hi};
}

Range parse_port_range(const std::string& opt, const char* v) {
  const std::string s = v;
  const size_t dash = s.find('-');
  const uint32_t lo = parse_uint(opt, s.substr(0, dash).c_str(), 1, 65535);
  const uint32_t hi =
      dash == std::string::npos ? lo : parse_uint(opt, s.substr(dash + 1).c_str(), 1, 65535);
  if (hi < lo) bad(opt + ": the range must be low-high, found '" + s + "'");
  return {lo, hi};
}

rte_ether_addr parse_mac(const std::string& opt, const char* v) {
  rte_ether_addr m;
  if (rte_ether_unformat_addr(v, &m) != 0)
    bad(opt + ": expected a MAC like 02:00:00:00:00:01, found '" + v + "'");
  return m;
}

Options parse_args(int argc, char** argv) {
  Options o;
  uint64_t service_span = 0;  // hosts of --service-base NET/LEN
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--progress") {
      o.progress = true;
      continue;
    }
    if (a == "--search") {
      o.search = true;
      continue;
    }
    if (a == "--hold") {
      o.hold = true;
      continue;
    }
    if (i + 1 >= argc) bad(a + ": needs a value (or is unknown)");
    const char* v = argv[++i];
    auto port_id = [&] { return static_cast<uint16_t>(parse_uint(a, v, 0, RTE_MAX_ETHPORTS - 1)); };
    auto l4_port = [&] { return static_cast<uint16_t>(parse_uint(a, v, 1, 65535)); };
    // clang-format off
    if (a == "--port-tx") a = "--tx-port";  // issue 7's spelling
    if (a == "--port-rx") a = "--rx-port";
    if (a == "--port") o.tx_port = o.rx_port = port_id();
    else if (a == "--tx-port") o.tx_port = port_id();
    else if (a == "--rx-port") o.rx_port = port_id();
    else if (a == "--src-mac") o.src_mac = parse_mac(a, v);
    else if (a == "--dst-mac") o.dst_mac = parse_mac(a, v);
    else if (a == "--size") o.size = parse_uint(a, v, kMinFrame, kMaxFrame);
    else if (a == "--proto") {
      const std::string p = v;
      if (p == "tcp") o.proto = IPPROTO_TCP;
      else if (p == "udp") o.proto = IPPROTO_UDP;
      else bad("--proto: expected tcp or udp, found '" + p + "'");
    }
    else if (a == "--flows") o.flows = parse_uint(a, v, 1, 1u << 26);
    else if (a == "--new-ratio") o.new_ratio = parse_number(a, v, 0, 1);
    else if (a == "--src") o.src = parse_addr_range(a, v);
    else if (a == "--sport") o.sport = parse_port_range(a, v);
    else if (a == "--dst") o.dst = parse_addr_range(a, v);
    else if (a == "--dport") o.dport = parse_port_range(a, v);
    else if (a == "--services") o.services = parse_uint(a, v, 0, 1u << 20);
    else if (a == "--service-base") {
      const Range r = parse_addr_range(a, v);
      o.service_base = r.lo;
      if (std::string_view(v).find('/') != std::string_view::npos) service_span = r.size();
    }
    else if (a == "--service-port") o.service_port = l4_port();
    else if (a == "--rate") o.rate = parse_number(a, v, 0, 1e9);
    else if (a == "--rate-mpps") o.rate = parse_number(a, v, 0, 1e3) * 1e6;
    else if (a == "--duration") o.duration = parse_number(a, v, 0.01, 86400);
    else if (a == "--drain-ms") o.drain_ms = parse_uint(a, v, 1, 60000);
    else if (a == "--learn-rate") o.learn_rate = parse_number(a, v, 0, 1e9);
    else if (a == "--search-max") o.search_max = parse_number(a, v, 1, 1e9);
    else if (a == "--search-min") o.search_min = parse_number(a, v, 1, 1e9);
    else if (a == "--loss") o.loss = parse_number(a, v, 0, 1);
    else if (a == "--resolution") o.resolution = parse_number(a, v, 0.0001, 0.5);
    else if (a == "--max-trials") o.max_trials = parse_uint(a, v, 1, 1000);
    else if (a == "--max-time") o.max_time = parse_number(a, v, 1, 86400);
    else if (a == "--retries") o.retries = parse_uint(a, v, 0, 10);
    else if (a == "--pause-ms") o.pause_ms = parse_uint(a, v, 0, 60000);
    else if (a == "--connect-timeout") o.connect_timeout = parse_number(a, v, 0.1, 600);
    else bad("unknown option '" + a + "'");
    // clang-format on
  }
  const uint64_t est_ports =
      o.new_ratio >= 1 ? 0 : (uint64_t{o.flows} + o.src.size() - 1) / o.src.size();
  if (est_ports > o.sport.size()) {
    bad("--flows " + std::to_string(o.flows) + " needs " + std::to_string(est_ports) +
        " source ports per source address but --sport has " + std::to_string(o.sport.size()));
  }
  if (o.new_ratio > 0 && est_ports >= o.sport.size()) {
    bad("--new-ratio: no source ports are left for new flows above the established ones; widen "
        "--sport or --src");
  }
  if (o.services != 0 && (uint64_t{o.service_base} + o.services > 0xFFFFFFFFull ||
                          (service_span != 0 && o.services > service_span))) {
    bad("--services: " + std::to_string(o.services) + " VIPs do not fit in --service-base");
  }
  if (o.search && o.search_max != 0 && o.search_max < o.search_min)
    bad("--search-max is below --search-min");
  return o;
}

// ------------------------------------------------------------ the frame

// Where the stamp and the fields a packet rewrites sit in the frame; the
// rest of the frame is the template, written into every TX mbuf once.
//   TCP: seq = packet sequence number, ack = TSC low 32 bits, payload[0..4) = magic|trial
//        (a 64-byte TCP frame has 6 payload bytes; dpgate's window-less
//        conntrack, like nf_conntrack_tcp_no_window_check, reads neither)
//   UDP: payload[0..4) = magic|trial, [4..8) = sequence number, [8..12) = TSC low 32 bits
struct Layout {
  uint16_t frame_len = 0;  // without FCS
  uint16_t l4_off = 14 + 20;
  uint16_t l4_len = 0;  // L4 header + payload
  uint16_t payload_off = 0;
};

Layout layout_of(const Options& o) {
  Layout l;
  l.frame_len = static_cast<uint16_t>(o.size - kFcs);
  l.l4_len = static_cast<uint16_t>(l.frame_len - l.l4_off);
  l.payload_off = static_cast<uint16_t>(l.l4_off + (o.proto == IPPROTO_TCP ? 20 : 8));
  return l;
}

// The template: headers with every per-packet field zero, a byte pattern as payload.
std::vector<uint8_t> build_template(const Options& o, const Layout& l,
                                    const rte_ether_addr& src_mac) {
  std::vector<uint8_t> f(l.frame_len, 0);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(f.data());
  eth->dst_addr = o.dst_mac;
  eth->src_addr = src_mac;
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(f.data() + 14);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(l.frame_len - 14));
  ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
  ip->time_to_live = 64;
  ip->next_proto_id = o.proto;
  if (o.proto == IPPROTO_TCP) {
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(f.data() + l.l4_off);
    tcp->data_off = 5 << 4;
    tcp->rx_win = rte_cpu_to_be_16(65535);
  } else {
    auto* udp = reinterpret_cast<rte_udp_hdr*>(f.data() + l.l4_off);
    udp->dgram_len = rte_cpu_to_be_16(l.l4_len);
  }
  for (size_t i = l.payload_off; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i * 7);
  const size_t stamp_len = o.proto == IPPROTO_TCP ? 4 : 12;
  std::memset(f.data() + l.payload_off, 0, stamp_len);
  return f;
}

// Sum of the 16-bit words of [p, p+len) as they lie in memory (len even):
// one's complement sums do not care about byte order if the result is
// stored the same way it was read.
inline uint32_t word_sum(const void* p, size_t len) {
  uint32_t s = 0;
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < len; i += 2) {
    uint16_t w;
    std::memcpy(&w, b + i, 2);
    s += w;
  }
  return s;
}

inline uint16_t fold(uint32_t s) {
  s = (s & 0xFFFF) + (s >> 16);
  s = (s & 0xFFFF) + (s >> 16);
  return static_cast<uint16_t>(~s & 0xFFFF);
}

// Constant parts of both checksums, taken from the template once.
struct ChecksumBase {
  uint32_t ip = 0;  // IPv4 header without addresses
  uint32_t l4 =
      0;  // pseudo header without addresses + L4 header and payload without per-packet fields
  uint32_t tcp_off_word = 0;  // the template's TCP data offset + flags word (flags zero)
};

ChecksumBase checksum_base(const std::vector<uint8_t>& f, const Layout& l, uint8_t proto) {
  ChecksumBase b;
  b.ip = word_sum(f.data() + 14, 20);
  const uint16_t pseudo[2] = {rte_cpu_to_be_16(proto), rte_cpu_to_be_16(l.l4_len)};
  b.l4 = word_sum(pseudo, sizeof pseudo) + word_sum(f.data() + l.l4_off, l.l4_len & ~1u);
  if (l.l4_len & 1)
    b.l4 += rte_cpu_to_be_16(static_cast<uint16_t>(f[l.l4_off + l.l4_len - 1] << 8));
  if (proto == IPPROTO_TCP) b.tcp_off_word = word_sum(f.data() + l.l4_off + 12, 2);
  return b;
}

// --------------------------------------------------------------- flows

struct Tuple {
  uint32_t src, dst;  // host order
  uint16_t sport, dport;
};

// Established flow f and new flow n, as the --help text describes: sources
// vary fastest, then source ports; established flows own the lowest ports.
struct FlowPlan {
  Range src, sport, dst, dport;
  uint32_t services = 0, service_base = 0;
  uint16_t service_port = 0;
  uint32_t est_ports = 0;  // source ports per address taken by established flows

  explicit FlowPlan(const Options& o)
      : src(o.src),
        sport(o.sport),
        dst(o.dst),
        dport(o.dport),
        services(o.services),
        service_base(o.service_base),
        service_port(o.service_port),
        est_ports(o.new_ratio >= 1 ? 0
                                   : static_cast<uint32_t>((uint64_t{o.flows} + o.src.size() - 1) /
                                                           o.src.size())) {}

  void destination(uint64_t i, Tuple& t) const {
    if (services != 0) {
      t.dst = service_base + static_cast<uint32_t>(i % services);
      t.dport = service_port;
    } else {
      t.dst = dst.lo + static_cast<uint32_t>(i % dst.size());
      t.dport = static_cast<uint16_t>(dport.lo + i % dport.size());
    }
  }
  Tuple established(uint64_t f) const {
    Tuple t;
    t.src = src.lo + static_cast<uint32_t>(f % src.size());
    t.sport = static_cast<uint16_t>(sport.lo + f / src.size());
    destination(f, t);
    return t;
  }
  // New flows repeat after src x (ports above the established ones) tuples:
  // 250 x 64 k = 16 M with the defaults, so a tuple comes back only after
  // the DUT's conntrack has long evicted it.
  Tuple fresh(uint64_t n) const {
    Tuple t;
    const uint64_t ports = sport.size() - est_ports;
    t.src = src.lo + static_cast<uint32_t>(n % src.size());
    t.sport = static_cast<uint16_t>(sport.lo + est_ports + (n / src.size()) % ports);
    destination(n, t);
    return t;
  }
};

// ------------------------------------------------------------- latency

// Log-linear histogram of TSC ticks (64 sub-buckets per power of two, so a
// bucket is at most 1/64 = 1.6 % wide); fixed size, no allocation per sample.
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 6;
  static constexpr unsigned kSub = 1u << kSubBits;
  static constexpr unsigned kBuckets = 2 * kSub + (32 - kSubBits - 1) * kSub;

  void add(uint32_t ticks) {
    ++counts_[bucket(ticks)];
    ++n_;
    sum_ += ticks;
    min_ = std::min(min_, ticks);
    max_ = std::max(max_, ticks);
  }
  uint64_t count() const { return n_; }
  uint32_t min() const { return min_; }
  uint32_t max() const { return max_; }
  double mean() const { return n_ ? static_cast<double>(sum_) / static_cast<double>(n_) : 0; }
  // The value below which a fraction p of the samples lie (bucket midpoint).
  double percentile(double p) const {
    if (n_ == 0) return 0;
    const uint64_t rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(p * static_cast<double>(n_) + 0.999999));
    uint64_t seen = 0;
    for (unsigned b = 0; b < kBuckets; ++b) {
      seen += counts_[b];
      if (seen >= rank)
        return std::clamp(midpoint(b), static_cast<double>(min_), static_cast<double>(max_));
    }
    return max_;
  }

 private:
  static unsigned bucket(uint32_t v) {
    if (v < 2 * kSub) return v;
    const unsigned msb = 31u - static_cast<unsigned>(__builtin_clz(v));
    const unsigned shift = msb - kSubBits;
    return 2 * kSub + (msb - kSubBits - 1) * kSub + ((v >> shift) - kSub);
  }
  static double midpoint(unsigned b) {
    if (b < 2 * kSub) return b;
    const unsigned e = (b - 2 * kSub) / kSub + kSubBits + 1;
    const unsigned shift = e - kSubBits;
    const double lo =
        static_cast<double>(((b - 2 * kSub) % kSub + kSub)) * static_cast<double>(1u << shift);
    return lo + static_cast<double>(1u << shift) / 2;
  }
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t n_ = 0, sum_ = 0;
  uint32_t min_ = UINT32_MAX, max_ = 0;
};

// ----------------------------------------------------------- the trial

struct Counters {
  uint64_t offered = 0;    // built and handed to tx_burst
  uint64_t sent = 0;       // accepted by tx_burst
  uint64_t tx_full = 0;    // refused by tx_burst (the DUT's RX ring was full): lost
  uint64_t skipped = 0;    // never built: the generator fell behind its schedule (or had no mbuf)
  uint64_t received = 0;   // stamped frames of this trial back on the RX port
  uint64_t stale = 0;      // stamped frames of an earlier trial (arrived after its drain)
  uint64_t other = 0;      // anything else on the RX port (ARP, ICMP, foreign frames)
  uint64_t reordered = 0;  // a frame whose sequence number is below one already received
  uint64_t translated =
      0;                   // received with a destination address the generator never sent to (DNAT)
  uint64_t new_flows = 0;  // frames that opened a new flow
  // Unpaced only: tx_burst calls, and those the DUT's full ring cut short.
  // A DUT that sets the rate pushes back on a good share of the calls; one
  // that keeps up never does, and the generator set the rate.
  uint64_t tx_calls = 0;
  uint64_t pushed_back = 0;
};

struct TrialResult {
  unsigned trial = 0;
  double target_pps = 0;
  double seconds = 0;  // sending time
  Counters c;
  LatencyHistogram latency;
  bool gen_limited =
      false;  // the generator fell behind: skipped over 1 % of the frames due (still valid)
  bool pass = false;
};

class Generator {
 public:
  Generator(const Options& o, uint16_t tx_port, uint16_t rx_port, rte_mempool* tx_pool,
            const Layout& l, const ChecksumBase& base)
      : o_(o),
        plan_(o),
        tx_port_(tx_port),
        rx_port_(rx_port),
        tx_pool_(tx_pool),
        layout_(l),
        base_(base),
        tsc_hz_(rte_get_tsc_hz()) {}

  // Sends at `pps` (0: unpaced) for `seconds`, then drains; prints one
  // JSON line per second with --progress. `trial` goes into the stamps
  // (low 16 bits) so late frames of a trial are never counted by the next.
  TrialResult run_trial(unsigned trial, double pps, double seconds, bool learning = false);

  // Every established flow once at --learn-rate (not a trial; counters dropped).
  void learn() {
    if (o_.learn_rate <= 0 || o_.new_ratio >= 1) return;
    run_trial(0xFFFF, o_.learn_rate, static_cast<double>(o_.flows) / o_.learn_rate, true);
  }

  double tsc_hz() const { return static_cast<double>(tsc_hz_); }

 private:
  void build_burst(rte_mbuf** m, uint16_t n, uint16_t trial, uint32_t tsc_lo, Counters& c,
                   bool learning);
  void receive(uint16_t trial, TrialResult& r, uint32_t& max_seq);
  uint16_t receive_burst(uint16_t trial, TrialResult& r, uint32_t& max_seq);

  const Options& o_;
  FlowPlan plan_;
  uint16_t tx_port_, rx_port_;
  rte_mempool* tx_pool_;
  Layout layout_;
  ChecksumBase base_;
  uint64_t tsc_hz_;
  uint64_t next_established_ = 0;  // round-robin over the fixed flow set
  uint64_t next_new_ = 0;          // never reset: a new flow's tuple is never reused soon
  uint32_t seq_ = 0;
  double new_credit_ = 0;
  Range dst_sent_ =
      o_.services != 0 ? Range{o_.service_base, o_.service_base + o_.services - 1} : o_.dst;
};

void Generator::build_burst(rte_mbuf** m, uint16_t n, uint16_t trial, uint32_t tsc_lo, Counters& c,
                            bool learning) {
  const bool tcp = o_.proto == IPPROTO_TCP;
  const rte_be32_t magic = rte_cpu_to_be_32((uint32_t{kMagic} << 16) | trial);
  const rte_be32_t tsc_be = rte_cpu_to_be_32(tsc_lo);
  for (uint16_t i = 0; i < n; ++i) {
    bool fresh = false;
    if (!learning) {
      new_credit_ += o_.new_ratio;
      if (new_credit_ >= 1.0) {
        new_credit_ -= 1.0;
        fresh = true;
      }
    }
    const Tuple t =
        fresh ? plan_.fresh(next_new_++) : plan_.established(next_established_++ % o_.flows);
    c.new_flows += fresh;
    rte_mbuf* mb = m[i];
    mb->data_len = layout_.frame_len;
    mb->pkt_len = layout_.frame_len;
    auto* p = rte_pktmbuf_mtod(mb, uint8_t*);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p + 14);
    ip->src_addr = rte_cpu_to_be_32(t.src);
    ip->dst_addr = rte_cpu_to_be_32(t.dst);
    const uint32_t addr_sum = word_sum(&ip->src_addr, 8);
    ip->hdr_checksum = 0;
    ip->hdr_checksum = fold(base_.ip + addr_sum);
    const rte_be32_t seq_be = rte_cpu_to_be_32(seq_++);
    uint32_t l4 = base_.l4 + addr_sum;
    if (tcp) {
      auto* th = reinterpret_cast<rte_tcp_hdr*>(p + layout_.l4_off);
      th->src_port = rte_cpu_to_be_16(t.sport);
      th->dst_port = rte_cpu_to_be_16(t.dport);
      th->sent_seq = seq_be;
      th->recv_ack = tsc_be;
      th->tcp_flags = fresh ? kTcpSyn : kTcpAck;
      th->cksum = 0;
      std::memcpy(p + layout_.payload_off, &magic, 4);
      // Ports, seq and ack; the flags' share of their word (the template has
      // them zero, so the difference is non-negative); the stamp.
      l4 += word_sum(th, 12) + (word_sum(&th->data_off, 2) - base_.tcp_off_word);
      l4 += word_sum(p + layout_.payload_off, 4);
      th->cksum = fold(l4);
    } else {
      auto* uh = reinterpret_cast<rte_udp_hdr*>(p + layout_.l4_off);
      uh->src_port = rte_cpu_to_be_16(t.sport);
      uh->dst_port = rte_cpu_to_be_16(t.dport);
      uh->dgram_cksum = 0;
      uint8_t* stamp = p + layout_.payload_off;
      std::memcpy(stamp, &magic, 4);
      std::memcpy(stamp + 4, &seq_be, 4);
      std::memcpy(stamp + 8, &tsc_be, 4);
      l4 += word_sum(uh, 4) + word_sum(stamp, 12);
      const uint16_t ck = fold(l4);
      uh->dgram_cksum = ck == 0 ? 0xFFFF : ck;
    }
  }
}

// Drains the RX queue, a burst at a time (at most 16): a generator back
// from being preempted must empty the DUT's TX ring before it overflows.
void Generator::receive(uint16_t trial, TrialResult& r, uint32_t& max_seq) {
  for (int k = 0; k < 16 && receive_burst(trial, r, max_seq) == kBurst; ++k) {
  }
}

uint16_t Generator::receive_burst(uint16_t trial, TrialResult& r, uint32_t& max_seq) {
  rte_mbuf* m[kBurst];
  const uint16_t n = rte_eth_rx_burst(rx_port_, 0, m, kBurst);
  if (n == 0) return 0;
  const uint32_t now_lo = static_cast<uint32_t>(rte_rdtsc());
  for (uint16_t i = 0; i < n; ++i) {
    const uint8_t* p = rte_pktmbuf_mtod(m[i], const uint8_t*);
    const uint32_t len = m[i]->data_len;
    const auto* eth = reinterpret_cast<const rte_ether_hdr*>(p);
    if (len < 14 + 20 + 8 || eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
      ++r.c.other;
      continue;
    }
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(p + 14);
    const uint32_t l4_off = 14 + (ip->version_ihl & 0xF) * 4u;
    uint32_t payload_off = 0;
    if (ip->next_proto_id == IPPROTO_TCP && len >= l4_off + 20) {
      payload_off = l4_off + (reinterpret_cast<const rte_tcp_hdr*>(p + l4_off)->data_off >> 4) * 4u;
    } else if (ip->next_proto_id == IPPROTO_UDP) {
      payload_off = l4_off + 8;
    }
    const bool tcp = ip->next_proto_id == IPPROTO_TCP;
    if (payload_off == 0 || len < payload_off + (tcp ? 4 : 12)) {
      ++r.c.other;
      continue;
    }
    rte_be32_t magic, seq_be, tsc_be;
    std::memcpy(&magic, p + payload_off, 4);
    const uint32_t word = rte_be_to_cpu_32(magic);
    if ((word >> 16) != kMagic) {
      ++r.c.other;
      continue;
    }
    if ((word & 0xFFFF) != trial) {
      ++r.c.stale;
      continue;
    }
    if (tcp) {
      const auto* th = reinterpret_cast<const rte_tcp_hdr*>(p + l4_off);
      seq_be = th->sent_seq;
      tsc_be = th->recv_ack;
    } else {
      std::memcpy(&seq_be, p + payload_off + 4, 4);
      std::memcpy(&tsc_be, p + payload_off + 8, 4);
    }
    const uint32_t seq = rte_be_to_cpu_32(seq_be);
    const uint32_t dst = rte_be_to_cpu_32(ip->dst_addr);
    r.c.translated += dst - dst_sent_.lo >= dst_sent_.size();
    if (r.c.received != 0 && static_cast<int32_t>(seq - max_seq) < 0)
      ++r.c.reordered;
    else
      max_seq = seq;
    ++r.c.received;
    r.latency.add(now_lo - rte_be_to_cpu_32(tsc_be));
  }
  rte_pktmbuf_free_bulk(m, n);
  return n;
}

double to_us(double ticks, double hz) {
  return ticks * 1e6 / hz;
}

std::string latency_json(const LatencyHistogram& h, double hz) {
  if (h.count() == 0) return "null";
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "{\"min\":%.3f,\"avg\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"samples\":%" PRIu64 "}",
      to_us(h.min(), hz), to_us(h.mean(), hz), to_us(h.percentile(0.5), hz),
      to_us(h.percentile(0.99), hz), to_us(h.max(), hz), h.count());
  return buf;
}

uint64_t lost_of(const Counters& c) {
  return c.offered > c.received ? c.offered - c.received : 0;
}

std::string trial_json(const char* kind, const TrialResult& r, double hz) {
  const Counters& c = r.c;
  const double s = r.seconds > 0 ? r.seconds : 1;
  char buf[1536];
  std::snprintf(
      buf, sizeof buf,
      "{\"kind\":\"%s\",\"trial\":%u,\"target_pps\":%.0f,\"seconds\":%.3f,\"offered\":%" PRIu64
      ",\"sent\":%" PRIu64 ",\"tx_full\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"received\":%" PRIu64
      ",\"lost\":%" PRIu64 ",\"loss_ratio\":%.6g,\"stale\":%" PRIu64 ",\"other\":%" PRIu64
      ",\"reordered\":%" PRIu64 ",\"translated\":%" PRIu64 ",\"new_flows\":%" PRIu64
      ",\"offered_pps\":%.0f,\"rx_pps\":%.0f,\"pushback\":%.4f,\"latency_us\":%s,"
      "\"generator_limited\":%s,\"pass\":%s}",
      kind, r.trial, r.target_pps, r.seconds, c.offered, c.sent, c.tx_full, c.skipped, c.received,
      lost_of(c),
      c.offered ? static_cast<double>(lost_of(c)) / static_cast<double>(c.offered) : 0.0, c.stale,
      c.other, c.reordered, c.translated, c.new_flows, static_cast<double>(c.offered) / s,
      static_cast<double>(c.received) / s,
      c.tx_calls ? static_cast<double>(c.pushed_back) / static_cast<double>(c.tx_calls) : 0.0,
      latency_json(r.latency, hz).c_str(),
      r.gen_limited ? "true" : "false", r.pass ? "true" : "false");
  return buf;
}

TrialResult Generator::run_trial(unsigned trial, double pps, double seconds, bool learning) {
  TrialResult r;
  r.trial = trial;
  r.target_pps = pps;
  const uint16_t id = static_cast<uint16_t>(trial);
  const uint64_t hz = tsc_hz_;
  // Pacing: a burst is due every burst_ticks. A generator that falls behind
  // (preempted by another process) catches up at most kMaxCatchUp bursts
  // (1024 frames; zero-loss.sh gives the DUT 16 k-frame rings), so the DUT never
  // sees a longer backlog dumped at once; the rest is skipped and counted,
  // and lowers the offered rate the trial reports.
  constexpr uint64_t kMaxCatchUp = 32;
  const uint64_t burst_ticks =
      pps > 0 ? static_cast<uint64_t>(static_cast<double>(hz) * kBurst / pps) : 0;
  const auto due = static_cast<uint64_t>(pps * seconds + 0.5);
  const uint64_t start = rte_rdtsc();
  const uint64_t end = start + static_cast<uint64_t>(seconds * static_cast<double>(hz));
  uint64_t next = start;
  uint64_t second_mark = start + hz;
  Counters last_second;
  uint32_t max_seq = 0;
  rte_mbuf* m[kBurst];
  uint64_t now = start;
  // Unpaced (pps 0): as fast as the DUT takes frames. Its full ring pushes
  // back: refused frames are held and offered again, not counted as lost, so
  // the trial measures the DUT's forwarding rate under backpressure.
  rte_mbuf* held[kBurst];
  uint16_t held_first = 0, held_n = 0;
  while (now < end && !g_stop) {
    if (pps <= 0) {
      if (held_n == 0 && rte_pktmbuf_alloc_bulk(tx_pool_, held, kBurst) == 0) {
        build_burst(held, kBurst, id, static_cast<uint32_t>(rte_rdtsc()), r.c, learning);
        held_first = 0;
        held_n = kBurst;
      }
      const uint16_t sent = held_n ? rte_eth_tx_burst(tx_port_, 0, held + held_first, held_n) : 0;
      r.c.tx_calls += held_n ? 1 : 0;
      r.c.pushed_back += sent < held_n ? 1 : 0;
      held_first = static_cast<uint16_t>(held_first + sent);
      held_n = static_cast<uint16_t>(held_n - sent);
      r.c.offered += sent;
      r.c.sent += sent;
    } else if (now >= next) {
      if (now - next > kMaxCatchUp * burst_ticks) {
        const uint64_t late = (now - next) / burst_ticks - kMaxCatchUp;
        r.c.skipped += late * kBurst;
        next += late * burst_ticks;
      }
      // The last burst is cut so the trial offers exactly pps x seconds.
      const uint64_t done = r.c.offered + r.c.skipped;
      const uint16_t n =
          static_cast<uint16_t>(std::min<uint64_t>(kBurst, due > done ? due - done : 0));
      if (n > 0 && rte_pktmbuf_alloc_bulk(tx_pool_, m, n) == 0) {
        build_burst(m, n, id, static_cast<uint32_t>(rte_rdtsc()), r.c, learning);
        const uint16_t sent = rte_eth_tx_burst(tx_port_, 0, m, n);
        if (sent < n) rte_pktmbuf_free_bulk(m + sent, n - sent);
        r.c.offered += n;
        r.c.sent += sent;
        r.c.tx_full += n - sent;
      } else {
        r.c.skipped += n;  // no mbufs to build them in: never built either
      }
      next += burst_ticks;
    }
    receive(id, r, max_seq);
    now = rte_rdtsc();
    if (o_.progress && !learning && now >= second_mark) {
      const double secs = static_cast<double>(now - start) / static_cast<double>(hz);
      std::printf("{\"kind\":\"second\",\"trial\":%u,\"t\":%.2f,\"offered_pps\":%" PRIu64
                  ",\"rx_pps\":%" PRIu64 ",\"tx_full\":%" PRIu64 "}\n",
                  trial, secs, r.c.offered - last_second.offered,
                  r.c.received - last_second.received, r.c.tx_full - last_second.tx_full);
      std::fflush(stdout);
      last_second = r.c;
      second_mark += hz;
    }
  }
  if (held_n != 0) rte_pktmbuf_free_bulk(held + held_first, held_n);
  // Paced, the window can close while bursts are still due: the generator
  // was preempted across its end (the last burst falls a few ms before it).
  // Those frames were skipped too, so offered + skipped is always what was due.
  if (pps > 0 && !g_stop && r.c.offered + r.c.skipped < due) r.c.skipped += due - (r.c.offered + r.c.skipped);
  r.seconds = static_cast<double>(std::min(now, end) - start) / static_cast<double>(hz);
  // Drain: what the DUT still holds arrives within drain_ms, or counts as lost.
  const uint64_t drain_end = rte_rdtsc() + o_.drain_ms * hz / 1000;
  while (rte_rdtsc() < drain_end && !g_stop) receive(id, r, max_seq);
  // A trial passes when the DUT lost no more than allowed of what was
  // offered. What counts as its rate is what was offered: a generator that
  // had to skip (preempted on a shared machine) offered less than asked.
  const uint64_t lost = lost_of(r.c);
  // Paced: it skipped over 1 % of the frames due. Unpaced: the DUT's ring
  // pushed back on under 1 % of the sends, so the DUT kept up with it.
  r.gen_limited = pps > 0 ? static_cast<double>(r.c.skipped) > 0.01 * static_cast<double>(due)
                          : static_cast<double>(r.c.pushed_back) < 0.01 * static_cast<double>(r.c.tx_calls);
  r.pass =
      r.c.offered > 0 && static_cast<double>(lost) <= o_.loss * static_cast<double>(r.c.offered);
  return r;
}

void pause_ms(uint32_t ms) {
  const uint64_t end = rte_rdtsc() + uint64_t{ms} * rte_get_tsc_hz() / 1000;
  while (rte_rdtsc() < end && !g_stop) rte_delay_us_sleep(1000);
}

// ------------------------------------------------------------- ports

rte_mempool* make_pool(const char* name, uint32_t n, uint16_t data_room) {
  rte_mempool* p =
      rte_pktmbuf_pool_create(name, n, 256, 0, data_room, static_cast<int>(rte_socket_id()));
  if (p == nullptr) {
    std::fprintf(stderr, "dpgate-gen: cannot create mbuf pool %s (%u mbufs): %s\n", name, n,
                 rte_strerror(rte_errno));
    std::exit(1);
  }
  return p;
}

// One RX and one TX queue. A net_memif client cannot start before its server
// listens, so start is retried until the deadline; then waits for link up.
bool open_port(uint16_t port, rte_mempool* rx_pool, uint64_t deadline) {
  rte_eth_conf conf;
  std::memset(&conf, 0, sizeof conf);
  if (int rc = rte_eth_dev_configure(port, 1, 1, &conf); rc != 0) {
    std::fprintf(stderr, "dpgate-gen: port %u: configure: %s\n", port, rte_strerror(-rc));
    return false;
  }
  uint16_t rxd = 1024, txd = 1024;
  rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
  const int sock = rte_eth_dev_socket_id(port);
  const unsigned socket_id = sock < 0 ? 0u : static_cast<unsigned>(sock);
  if (int rc = rte_eth_rx_queue_setup(port, 0, rxd, socket_id, nullptr, rx_pool); rc != 0) {
    std::fprintf(stderr, "dpgate-gen: port %u: RX queue: %s\n", port, rte_strerror(-rc));
    return false;
  }
  if (int rc = rte_eth_tx_queue_setup(port, 0, txd, socket_id, nullptr); rc != 0) {
    std::fprintf(stderr, "dpgate-gen: port %u: TX queue: %s\n", port, rte_strerror(-rc));
    return false;
  }
  int rc = 0;
  while ((rc = rte_eth_dev_start(port)) != 0 && rte_rdtsc() < deadline && !g_stop)
    rte_delay_us_sleep(200000);
  if (rc != 0) {
    std::fprintf(stderr, "dpgate-gen: port %u: cannot start: %s\n", port, rte_strerror(-rc));
    return false;
  }
  rte_eth_promiscuous_enable(port);
  return true;
}

bool link_up(uint16_t port) {
  rte_eth_link link;
  std::memset(&link, 0, sizeof link);
  return rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

bool wait_link(uint16_t port, uint64_t deadline) {
  rte_eth_link link;
  while (!g_stop) {
    std::memset(&link, 0, sizeof link);
    if (rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP)
      return true;
    if (rte_rdtsc() >= deadline) break;
    rte_delay_us_sleep(50000);
  }
  std::fprintf(stderr,
               "dpgate-gen: port %u: link is down (is the DUT running and serving this port?)\n",
               port);
  return false;
}

// When a memif peer leaves, DPDK's memif PMD tears the connection down in the
// EAL interrupt thread: memif_disconnect() marks the link down first, then
// closes the queues' descriptors and unmaps the regions. A dev_stop or
// dev_close from this thread meanwhile runs the same teardown again, on the
// same memory (the crash run.sh met now and then, as dpgate stopped). So
// after a link went down: wait for the other one (dpgate closes its ports one
// after the other), then for the interrupt thread itself. An EAL alarm runs in
// that thread after the callback in progress, so once an alarm set now has
// run, every teardown that had marked its link down is over.
void settle_disconnects(uint16_t tx_port, uint16_t rx_port) {
  for (int i = 0; i < 100 && (link_up(tx_port) || link_up(rx_port)); ++i) rte_delay_us_sleep(10000);
  std::atomic<bool> ran{false};
  const rte_eal_alarm_callback mark = [](void* arg) { static_cast<std::atomic<bool>*>(arg)->store(true); };
  if (rte_eal_alarm_set(1, mark, &ran) != 0) return;
  for (int i = 0; i < 2000 && !ran.load(); ++i) rte_delay_us_sleep(1000);
  // Not run in 2 s: cancel it, so that it cannot write `ran` once gone
  // (a cancel waits for a callback already running).
  if (!ran.load()) rte_eal_alarm_cancel(mark, &ran);
}

// Writes the template into every TX mbuf once, at start.
struct TemplateWriter {
  const std::vector<uint8_t>* frame;
};

void write_template(rte_mempool*, void* arg, void* obj, unsigned) {
  const auto* w = static_cast<const TemplateWriter*>(arg);
  auto* m = static_cast<rte_mbuf*>(obj);
  std::memcpy(static_cast<uint8_t*>(m->buf_addr) + RTE_PKTMBUF_HEADROOM, w->frame->data(),
              w->frame->size());
}

// ------------------------------------------------------------ search

std::string search(Generator& g, const Options& o) {
  const uint64_t t0 = rte_rdtsc();
  const double hz = g.tsc_hz();
  auto elapsed = [&] { return static_cast<double>(rte_rdtsc() - t0) / hz; };
  auto per_s = [](uint64_t n, const TrialResult& r) {
    return r.seconds > 0 ? static_cast<double>(n) / r.seconds : 0;
  };
  unsigned trial = 0;
  auto attempt = [&](double rate) {
    TrialResult r;
    for (unsigned k = 0; k <= o.retries && !g_stop; ++k) {
      r = g.run_trial(++trial, rate, o.duration);
      std::printf("%s\n", trial_json("trial", r, hz).c_str());
      std::fflush(stdout);
      pause_ms(o.pause_ms);
      if (r.pass || rate <= 0) break;
    }
    return r;
  };
  // Bounds: lo passed (0: nothing yet), hi failed or is the most the DUT
  // takes. Without --search-max the first trial is unpaced: the rate the DUT
  // accepted is hi, the rate it forwarded is the first candidate.
  double lo = 0, hi = o.search_max, rate = hi;
  if (hi == 0) {
    const TrialResult r = attempt(0);
    hi = per_s(r.c.sent, r);
    rate = std::min(per_s(r.c.received, r), hi);
  }
  std::optional<TrialResult> best;
  bool failed = false;  // hi is a rate a trial failed at (not just the bound)
  while (!g_stop && trial < o.max_trials && elapsed() < o.max_time && rate >= o.search_min &&
         hi > 0) {
    const TrialResult r = attempt(rate);
    if (r.pass) {
      // A pass proves the rate actually offered, which a preempted generator keeps below the
      // target.
      const double offered = std::min(rate, per_s(r.c.offered, r));
      if (!best || offered > per_s(best->c.offered, *best)) best = r;
      lo = std::max(lo, offered);
    } else {
      hi = rate;
      failed = true;
    }
    if (hi - lo <= o.resolution * hi) break;
    rate = (lo + hi) / 2;
  }
  char buf[2048];
  char lowest_failed[32] = "null";
  if (failed) std::snprintf(lowest_failed, sizeof lowest_failed, "%.0f", hi);
  if (!best) {
    std::snprintf(
        buf, sizeof buf,
        "{\"kind\":\"search\",\"found\":false,\"zero_loss_pps\":0,\"lowest_failed_pps\":%s,"
        "\"trials\":%u,\"seconds\":%.1f,\"loss_allowed\":%g}",
        lowest_failed, trial, elapsed(), o.loss);
    return buf;
  }
  const double offered = per_s(best->c.offered, *best);
  std::snprintf(
      buf, sizeof buf,
      "{\"kind\":\"search\",\"found\":true,\"zero_loss_pps\":%.0f,\"zero_loss_mpps\":%.4f,"
      "\"target_pps\":%.0f,\"lowest_failed_pps\":%s,\"trials\":%u,"
      "\"seconds\":%.1f,\"loss_allowed\":%g,\"new_flows_per_s\":%.0f,\"latency_us\":%s,\"best\":%"
      "s}",
      offered, offered / 1e6, best->target_pps, lowest_failed, trial, elapsed(), o.loss,
      per_s(best->c.new_flows, *best), latency_json(best->latency, hz).c_str(),
      trial_json("trial", *best, hz).c_str());
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const int eal_args = rte_eal_init(argc, argv);
  if (eal_args < 0) {
    std::fprintf(stderr, "dpgate-gen: EAL init failed: %s\n%s", rte_strerror(rte_errno), kUsage);
    return 1;
  }
  argc -= eal_args;
  argv += eal_args;
  // What remains is argv[0] (or "--") and the application options.
  const Options o = parse_args(argc - 1, argv + 1);
  std::signal(SIGINT, on_stop);
  std::signal(SIGTERM, on_stop);

  const uint16_t ports = rte_eth_dev_count_avail();
  if (ports == 0)
    bad("no DPDK port: give one with --vdev (e.g. net_memif0,role=client,socket=PATH)");
  const uint16_t tx_port = o.tx_port.value_or(0);
  const uint16_t rx_port = o.rx_port.value_or(ports > 1 && !o.tx_port ? 1 : tx_port);
  if (!rte_eth_dev_is_valid_port(tx_port) || !rte_eth_dev_is_valid_port(rx_port)) {
    bad("port " + std::to_string(rte_eth_dev_is_valid_port(tx_port) ? rx_port : tx_port) +
        " does not exist (" + std::to_string(ports) + " ports)");
  }

  const Layout layout = layout_of(o);
  const auto data_room = static_cast<uint16_t>(RTE_PKTMBUF_HEADROOM + 2048);
  rte_mempool* tx_pool = make_pool("gen_tx", 8191, data_room);
  rte_mempool* rx_pool = make_pool("gen_rx", 8191, data_room);
  const uint64_t deadline =
      rte_rdtsc() +
      static_cast<uint64_t>(o.connect_timeout * static_cast<double>(rte_get_tsc_hz()));
  int rc = 0;
  if (!open_port(tx_port, rx_pool, deadline) ||
      (rx_port != tx_port && !open_port(rx_port, rx_pool, deadline)) ||
      !wait_link(tx_port, deadline) || !wait_link(rx_port, deadline)) {
    rc = 1;
  }
  if (rc == 0) {
    rte_ether_addr src_mac;
    if (o.src_mac)
      src_mac = *o.src_mac;
    else
      rte_eth_macaddr_get(tx_port, &src_mac);
    const std::vector<uint8_t> frame = build_template(o, layout, src_mac);
    TemplateWriter writer{&frame};
    rte_mempool_obj_iter(tx_pool, write_template, &writer);
    Generator g(o, tx_port, rx_port, tx_pool, layout, checksum_base(frame, layout, o.proto));
    char mac[RTE_ETHER_ADDR_FMT_SIZE], dmac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof mac, &src_mac);
    rte_ether_format_addr(dmac, sizeof dmac, &o.dst_mac);
    std::fprintf(
        stderr,
        "dpgate-gen: tx port %u (%s -> %s), rx port %u, %u-byte %s frames, %u flows, new-ratio %g, "
        "%u services, TSC %.3f GHz\n",
        tx_port, mac, dmac, rx_port, o.size, o.proto == IPPROTO_TCP ? "tcp" : "udp", o.flows,
        o.new_ratio, o.services, g.tsc_hz() / 1e9);
    g.learn();
    pause_ms(o.pause_ms);
    if (o.search) {
      std::printf("%s\n", search(g, o).c_str());
    } else {
      TrialResult r = g.run_trial(1, o.rate, o.duration);
      std::printf("%s\n", trial_json("result", r, g.tsc_hz()).c_str());
    }
    std::fflush(stdout);
    if (g_stop) rc = 130;
    while (o.hold && !g_stop && link_up(tx_port) && link_up(rx_port)) rte_delay_us_sleep(100000);
  }
  if (!link_up(tx_port) || !link_up(rx_port)) settle_disconnects(tx_port, rx_port);
  rte_eth_dev_stop(tx_port);
  if (rx_port != tx_port) rte_eth_dev_stop(rx_port);
  rte_eth_dev_close(tx_port);
  if (rx_port != tx_port) rte_eth_dev_close(rx_port);
  rte_eal_cleanup();
  return rc;
}
