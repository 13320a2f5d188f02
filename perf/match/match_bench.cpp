// Cost per packet of -m string with 1, 10, 100, 1000 patterns: a filter
// chain of `-p tcp --dport 80 -m string --string PATTERN -j DROP` rules that
// no packet matches (so every rule is reached), evaluated by the compiled
// Program with the data plane's WorkerMatchState. Reports, per pattern count:
//   scan_ns      one Hyperscan scan of the packet (the whole database)
//   program_ns   Program::evaluate, scanning once per packet and walking only
//                the rules whose pattern the scan found
//   per_rule_ns  Program::evaluate, each rule searching on its own (xt_string's model)
// and the same chain without payload rules (no_payload_ns). Usage:
// match_bench [PAYLOAD_BYTES [TO [PATTERNS]]]; prints one JSON object per
// pattern count (PATTERNS: that count only, e.g. to profile it).
// With TO every string match gets `--to TO` (the pattern must end before
// byte TO of the datagram), as rules that look at headers only do.
// Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so that time
// spent descheduled on a shared machine does not count. Not a test:
// numbers, not verdicts.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "bench_data.hpp"
#include "dpgate/dataplane/match_state.hpp"
#include "dpgate/dataplane/published_rules.hpp"
#include "dpgate/match/payload.hpp"
#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"

using namespace dpgate;

namespace {

constexpr double kMinNs = 300e6;

double thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

std::string ruleset(size_t n, bool payload, size_t to, std::mt19937& rng) {
  std::string text = "*filter\n:FORWARD ACCEPT [0:0]\n";
  for (size_t i = 0; i < n; ++i) {
    std::string pat;
    for (int k = 0; k < 8; ++k) pat += char('a' + rng() % 26);
    // Without payload rules the same chain tests ports the packets do not use.
    text += "-A FORWARD -p tcp -m tcp --dport " + std::to_string(payload ? 80 : 10000 + i);
    if (payload) text += " -m string --string " + pat + std::to_string(i) + " --algo bm";
    if (payload && to > 0) text += " --to " + std::to_string(to);
    text += " -j DROP\n";
  }
  return text + "COMMIT\n";
}


rules::Packet packet_of(const std::string& d) {
  rules::Packet p;
  p.proto = 6;
  p.sport = 40000;
  p.dport = 80;
  p.payload = reinterpret_cast<const uint8_t*>(d.data());
  p.payload_len = uint16_t(d.size());
  p.length = p.payload_len;
  return p;
}

// The worker's state without string_scan: every string match searches on its
// own, as xt_string does.
class PerRuleSearch final : public rules::MatchState {
 public:
  explicit PerRuleSearch(rules::MatchState& s) : s_(s) {}
  uint32_t random31() override { return s_.random31(); }
  bool nth(uint32_t rule_id, uint32_t match_index, const rules::StatisticMatch& m) override {
    return s_.nth(rule_id, match_index, m);
  }
  bool recent(const rules::RecentCheck& m, const rules::Packet& p) override { return s_.recent(m, p); }
  bool limit(uint32_t rule_id, uint32_t match_index, const rules::LimitMatch& m) override {
    return s_.limit(rule_id, match_index, m);
  }
  void nfacct(const rules::NfacctMatch& m, const rules::Packet& p) override { s_.nfacct(m, p); }
  bool string(const rules::StringMatch& m, const rules::Packet& p) override { return s_.string(m, p); }

 private:
  rules::MatchState& s_;
};

template <class F>
double ns_per_packet(const std::vector<std::string>& ds, F&& one) {
  // Reading this clock is a system call (~0.5 us here, 8 ns per packet if
  // read once per 64 packets): passes over the datagrams grow until one
  // takes 200 us, so that the clock costs under 0.3% of any figure.
  size_t done = 0, reps = 1;
  uint64_t sink = 0;
  const double t0 = thread_cpu_ns();
  double now = t0;
  do {
    for (size_t r = 0; r < reps; ++r) {
      for (const auto& d : ds) sink += one(d);
    }
    done += reps * ds.size();
    const double before = now;
    now = thread_cpu_ns();
    if (now - before < 200e3) reps *= 2;
  } while (now - t0 < kMinNs);
  if (sink == 42) std::fputs("", stderr);
  return (now - t0) / double(done);
}

struct Setup {
  rules::Ruleset rs;
  std::unique_ptr<dataplane::PublishedRules> published;
};

Setup build(const std::string& text) {
  auto rs = rules::parse_ruleset(text, "bench.rules");
  if (!rs.ok()) {
    std::fprintf(stderr, "%s\n", rs.error().to_string().c_str());
    std::exit(1);
  }
  auto prog = rules::compile_ruleset(*rs);
  auto db = match::PayloadDatabase::build(*rs);
  if (!prog.ok() || !db.ok()) std::exit(1);
  Setup s{*rs, nullptr};
  s.published = std::make_unique<dataplane::PublishedRules>(1, *rs, std::move(*prog), std::move(*db),
                                                            rules::rule_ids(*rs).count, 1);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t payload_bytes = argc > 1 ? size_t(std::atoi(argv[1])) : 512;
  const size_t to = argc > 2 ? size_t(std::atoi(argv[2])) : 0;
  std::mt19937 rng(7);
  const auto ds = datagrams(payload_bytes, rng);
  const size_t only = argc > 3 ? size_t(std::atoi(argv[3])) : 0;
  for (size_t n : {1, 10, 100, 1000}) {
    if (only != 0 && n != only) continue;
    Setup with = build(ruleset(n, true, to, rng));
    Setup without = build(ruleset(n, false, to, rng));
    dataplane::WorkerMatchState fast(0, nullptr, 1), plain_state(0, nullptr, 1), none(0, nullptr, 1);
    PerRuleSearch plain(plain_state);
    fast.begin(with.published.get(), 0);
    plain_state.begin(with.published.get(), 0);
    none.begin(without.published.get(), 0);
    const auto& prog = with.published->program;
    const double program_ns = ns_per_packet(ds, [&](const std::string& d) {
      fast.begin_packet();
      return prog.evaluate(rules::Hook::kForward, packet_of(d), fast).matched_count;
    });
    const double per_rule_ns = ns_per_packet(ds, [&](const std::string& d) {
      return prog.evaluate(rules::Hook::kForward, packet_of(d), plain).matched_count;
    });
    const double no_payload_ns = ns_per_packet(ds, [&](const std::string& d) {
      return without.published->program.evaluate(rules::Hook::kForward, packet_of(d), none).matched_count;
    });
    // The scan alone, as the Program asks for it (the bitset; no per-match
    // lookup of the pattern id).
    match::PayloadScanner scanner(with.published->payload);
    const double scan_ns = ns_per_packet(ds, [&](const std::string& d) {
      scanner.begin_packet();
      const uint64_t* found = scanner.scan(reinterpret_cast<const uint8_t*>(d.data()), d.size());
      return found != nullptr ? found[0] : 1;
    });
    std::printf(
        "{\"patterns\": %zu, \"payload_bytes\": %zu, \"to\": %zu, \"scan_ns\": %.1f, \"program_ns\": %.1f, "
        "\"per_rule_ns\": %.1f, \"no_payload_ns\": %.1f}\n",
        n, payload_bytes, to, scan_ns, program_ns, per_rule_ns, no_payload_ns);
    std::fflush(stdout);
  }
  return 0;
}
