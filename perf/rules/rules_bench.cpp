// First-packet rule evaluation cost: the rule-by-rule interpreter vs the
// compiled Program on kube-proxy-shaped rulesets, plus parse and compile
// time. Usage: rules_bench FILE [FILE...] (made by scripts/kube-rules.py);
// prints one JSON object per file. Not a test: numbers, not verdicts.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

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

template <class F>
double ns_per_packet(const std::vector<Packet>& ps, F&& eval, double min_ms) {
  size_t done = 0;
  auto t0 = Clock::now();
  uint64_t sink = 0;
  do {
    for (const auto& p : ps) sink += uint64_t(eval(p).matched_count);
    done += ps.size();
  } while (ms_since(t0) < min_ms);
  const double ns = ms_since(t0) * 1e6 / double(done);
  if (sink == 42) std::fputs("", stderr);  // keep the work observable
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [FILE...]\n", argv[0]);
    return 2;
  }
  for (int a = 1; a < argc; ++a) {
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
    SimpleMatchState si(1), sp(1);
    // The interpreter at 10k services is slow: give each side enough time.
    const double interp_ns = ns_per_packet(ps, [&](const Packet& p) { return interp.evaluate(Hook::kPrerouting, p, si); }, 300);
    const double prog_ns = ns_per_packet(ps, [&](const Packet& p) { return prog->evaluate(Hook::kPrerouting, p, sp); }, 300);
    // Same rules, traffic to 16 services only: the working set stays in
    // cache, so this shows the algorithm's cost apart from memory latency.
    const auto hot = packets(std::min<size_t>(services, 16), 4096);
    SimpleMatchState sh(1);
    const double hot_ns = ns_per_packet(hot, [&](const Packet& p) { return prog->evaluate(Hook::kPrerouting, p, sh); }, 300);
    const auto& s = prog->stats();
    std::printf("{\"file\": \"%s\", \"services\": %zu, \"rules\": %zu, \"chains\": %zu, "
                "\"parse_ms\": %.1f, \"compile_ms\": %.2f, \"interpreter_ns_per_packet\": %.0f, "
                "\"program_ns_per_packet\": %.0f, \"program_16_services_ns_per_packet\": %.0f, "
                "\"hashed_rules\": %u, \"linear_rules\": %u}\n",
                argv[a], services, rs->rule_count(), rs->chain_count(), parse_ms, compile_ms,
                interp_ns, prog_ns, hot_ns, s.hashed_rules, s.linear_rules);
    std::fflush(stdout);
  }
  return 0;
}
