// First-packet rule evaluation cost: the rule-by-rule interpreter vs the
// compiled Program on kube-proxy-shaped rulesets, plus parse and compile
// time. Usage: rules_bench [--program-only] FILE [FILE...] (made by scripts/kube-rules.py);
// prints one JSON object per file. Not a test: numbers, not verdicts.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dpgate/lb/recent.hpp"
#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"

using namespace dpgate::rules;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// NEW tcp packets from clients to the ruleset's ClusterIPs (198.19.x.y:80,
// as kube-rules.py numbers them), 1 in 10 to an address with no service.
std::vector<Packet> packets(size_t services, size_t n) {
  std::mt19937 rng(42);
  std::vector<Packet> out;
  for (size_t k = 0; k < n; ++k) {
    Packet p;
    p.proto = 6;
    p.src = 0xc6120000u | (rng() & 0xffff);  // 198.18.x.y
    p.sport = uint16_t(1024 + rng() % 60000);
    const uint32_t s = 1 + uint32_t(rng() % services);
    p.dst = (rng() % 10 == 0) ? 0xc6130000u + uint32_t(services) + 100 : 0xc6130000u + s;
    p.dport = 80;
    p.tcp_flags = 0x02;
    p.length = 60;
    p.set_in_iface("eth0");
    out.push_back(p);
  }
  return out;
}

// The MatchState the data plane runs (dataplane::WorkerMatchState, which
// needs DPDK, so its recent() is repeated here): statistic from a
// xorshift64*, recent lists in the shared lb::RecentTable (one flat hash
// table for all lists, 65536 addresses as the config's default). The test
// double SimpleMatchState keeps a std::map of lists by name, whose lookups
// grow with the number of lists (6 000 at 10 000 services, a dozen string
// compares and cache misses per --rcheck): that is the test double's cost,
// not the Program's, and the data plane does not pay it.
class BenchMatchState final : public MatchState {
 public:
  uint32_t random31() override {
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return uint32_t((rng_ * 0x2545F4914F6CDD1Dull) >> 33);
  }
  bool nth(uint32_t rule_id, uint32_t match_index, const StatisticMatch& m) override {
    return other_.nth(rule_id, match_index, m);
  }
  bool recent(const RecentCheck& m, const Packet& p) override {
    const uint32_t addr = (m.rsource ? p.src : p.dst) & m.mask;
    const uint32_t list = m.list;
    switch (m.command) {
      case RecentMatch::Command::kSet:
        recent_.set(list, addr, now_ns_, p.ttl);
        return true;
      case RecentMatch::Command::kRemove:
        return recent_.remove(list, addr);
      case RecentMatch::Command::kRcheck:
      case RecentMatch::Command::kUpdate:
        return recent_.check(list, addr, now_ns_, m.seconds, m.hitcount, m.reap,
                             m.command == RecentMatch::Command::kUpdate, m.rttl, p.ttl);
    }
    return false;
  }
  bool limit(uint32_t rule_id, uint32_t match_index, const LimitMatch& m) override {
    return other_.limit(rule_id, match_index, m);
  }
  void nfacct(const NfacctMatch& m, const Packet& p) override { other_.nfacct(m, p); }
  bool string(const StringMatch& m, const Packet& p) override { return other_.string(m, p); }

 private:
  uint64_t rng_ = 1;
  uint64_t now_ns_ = uint64_t{1} << 40;
  dpgate::lb::RecentTable recent_{65536};
  SimpleMatchState other_;  // matches kube-proxy's rules do not use
};

// ns per packet over whole passes of `ps` (always the same packets in the
// same order), repeated for at least `min_ms`: the median pass, and the
// fastest, which a shared machine's preemptions do not reach.
struct Timing {
  double median = 0, min = 0;
};

template <class F>
Timing ns_per_packet(const std::vector<Packet>& ps, F&& eval, double min_ms) {
  std::vector<double> passes;
  auto t0 = Clock::now();
  uint64_t sink = 0;
  do {
    const auto t1 = Clock::now();
    sink += eval(ps);
    passes.push_back(ms_since(t1) * 1e6 / double(ps.size()));
  } while (ms_since(t0) < min_ms || passes.size() < 3);
  if (sink == 42) std::fputs("", stderr);  // keep the work observable
  std::sort(passes.begin(), passes.end());
  return {passes[passes.size() / 2], passes.front()};
}

// One packet at a time through the copying evaluate().
template <class F>
auto each(F&& eval) {
  return [eval](const std::vector<Packet>& ps) {
    uint64_t n = 0;
    for (const auto& p : ps) n += uint64_t(eval(p).matched_count);
    return n;
  };
}

// Bursts of 32 (the data plane's) through evaluate_burst(), each copied
// first as the one-by-one evaluate() copies its packet.
auto bursts(const Program& prog, MatchState& state) {
  return [&prog, &state](const std::vector<Packet>& ps) {
    constexpr size_t kBurst = 32;
    static Packet buf[kBurst];
    static HookResult res[kBurst];
    uint64_t n = 0;
    for (size_t k = 0; k < ps.size(); k += kBurst) {
      const size_t count = std::min(kBurst, ps.size() - k);
      std::copy(ps.begin() + long(k), ps.begin() + long(k + count), buf);
      prog.evaluate_burst(Hook::kPrerouting, buf, res, uint32_t(count), state);
      for (size_t q = 0; q < count; ++q) n += res[q].matched_count;
    }
    return n;
  };
}

}  // namespace

int main(int argc, char** argv) {
  // --program-only: no interpreter (quick A/B runs of the Program).
  const bool program_only = argc > 1 && std::strcmp(argv[1], "--program-only") == 0;
  const int first = program_only ? 2 : 1;
  if (argc <= first) {
    std::fprintf(stderr, "usage: %s [--program-only] FILE [FILE...]\n", argv[0]);
    return 2;
  }
  for (int a = first; a < argc; ++a) {
    std::ifstream in(argv[a]);
    std::stringstream ss;
    ss << in.rdbuf();
    auto t0 = Clock::now();
    auto rs = parse_ruleset(ss.str(), argv[a]);
    const double parse_ms = ms_since(t0);
    if (!rs) {
      std::fprintf(stderr, "%s\n", rs.error().to_string().c_str());
      return 1;
    }
    double compile_ms = 1e9;
    Expected<Program> prog = Error{};
    for (int k = 0; k < 5; ++k) {
      auto t1 = Clock::now();
      prog = compile_ruleset(*rs);
      compile_ms = std::min(compile_ms, ms_since(t1));
    }
    if (!prog) {
      std::fprintf(stderr, "%s\n", prog.error().to_string().c_str());
      return 1;
    }
    size_t services = 0;
    if (const Chain* c = rs->table(TableId::kNat).find("KUBE-SERVICES")) services = c->rules.size() - 1;
    const auto ps = packets(services, 4096);
    Interpreter interp(*rs);
    SimpleMatchState si(1), simple(1);
    BenchMatchState sp, sh;
    // The interpreter at 10k services is slow: give each side enough time.
    const Timing interp_ns =
        program_only ? Timing{}
                     : ns_per_packet(ps, each([&](const Packet& p) { return interp.evaluate(Hook::kPrerouting, p, si); }), 300);
    const Timing prog_ns =
        ns_per_packet(ps, each([&](const Packet& p) { return prog->evaluate(Hook::kPrerouting, p, sp); }), 300);
    // Same rules, traffic to 16 services only: the working set stays in
    // cache, so this shows the algorithm's cost apart from memory latency.
    const auto hot = packets(std::min<size_t>(services, 16), 4096);
    const Timing hot_ns =
        ns_per_packet(hot, each([&](const Packet& p) { return prog->evaluate(Hook::kPrerouting, p, sh); }), 300);
    BenchMatchState sb, shb;
    const Timing burst_ns = ns_per_packet(ps, bursts(*prog, sb), 300);
    const Timing hot_burst_ns = ns_per_packet(hot, bursts(*prog, shb), 300);
    // The Program with the test double's state, as this bench measured before.
    const Timing simple_ns =
        ns_per_packet(ps, each([&](const Packet& p) { return prog->evaluate(Hook::kPrerouting, p, simple); }), 300);
    const auto& s = prog->stats();
    std::printf("{\"file\": \"%s\", \"services\": %zu, \"rules\": %zu, \"chains\": %zu, "
                "\"parse_ms\": %.1f, \"compile_ms\": %.2f, \"interpreter_ns_per_packet\": %.0f, "
                "\"program_ns_per_packet\": %.0f, \"program_16_services_ns_per_packet\": %.0f, "
                "\"program_min_ns_per_packet\": %.0f, \"program_16_services_min_ns_per_packet\": %.0f, "
                "\"program_burst_ns_per_packet\": %.0f, \"program_burst_16_services_ns_per_packet\": %.0f, "
                "\"program_burst_min_ns_per_packet\": %.0f, \"program_burst_16_services_min_ns_per_packet\": %.0f, "
                "\"program_simple_state_ns_per_packet\": %.0f, "
                "\"hashed_rules\": %u, \"linear_rules\": %u}\n",
                argv[a], services, rs->rule_count(), rs->chain_count(), parse_ms, compile_ms,
                interp_ns.median, prog_ns.median, hot_ns.median, prog_ns.min, hot_ns.min, burst_ns.median, hot_burst_ns.median, burst_ns.min,
                hot_burst_ns.min, simple_ns.median, s.hashed_rules,
                s.linear_rules);
    std::fflush(stdout);
  }
  return 0;
}
