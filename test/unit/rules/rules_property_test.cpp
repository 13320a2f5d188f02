// Random rulesets x random packets: the compiled Program and the rule-by-rule
// interpreter must give the same verdict, NAT, marks, matched rules and LOG
// rules passed.
// Fixed seed (DPGATE_PROPERTY_SEED overrides); the seed is printed on failure.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <random>
#include <sstream>

#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"
#include "dpgate/rules/save.hpp"
#include "string_rules.hpp"

using namespace dpgate::rules;

namespace {

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  uint32_t below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  bool chance(uint32_t percent) { return below(100) < percent; }
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(uint32_t(v.size()))]; }

 private:
  std::mt19937_64 rng_;
};

const std::vector<std::string> kNets = {"10.0.0.0/8",  "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3",
                                        "10.1.2.4/31", "192.168.0.0/16", "198.18.0.0/15",
                                        "10.0.0.0/255.0.255.0"};
const std::vector<uint32_t> kAddrs = {0x0a010203, 0x0a010204, 0x0a010301, 0x0a020001,
                                      0xc0a80001, 0xc6120005, 0xc6130010, 0x0a000005};
const std::vector<uint16_t> kPorts = {22, 53, 80, 443, 1000, 5000, 8080};
const std::vector<std::string> kIfaces = {"eth0", "eth1", "lo", "wg0"};
const std::vector<std::string> kStates = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED",
                                          "NEW,ESTABLISHED", "RELATED,ESTABLISHED,DNAT"};

std::string ip(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

// One random rule body (after "-A CHAIN"). `targets` are allowed target texts.
std::string random_rule(Gen& g, const std::string& chain, const std::vector<std::string>& targets) {
  std::ostringstream r;
  const bool no_in = chain == "OUTPUT" || chain == "POSTROUTING";
  const bool no_out = chain == "PREROUTING" || chain == "INPUT";
  if (g.chance(30)) r << (g.chance(30) ? " ! -s " : " -s ") << g.pick(kNets);
  if (g.chance(30)) r << (g.chance(30) ? " ! -d " : " -d ") << g.pick(kNets);
  if (!no_in && g.chance(15)) r << (g.chance(30) ? " ! -i " : " -i ") << (g.chance(30) ? "eth+" : g.pick(kIfaces));
  if (!no_out && g.chance(15)) r << (g.chance(30) ? " ! -o " : " -o ") << g.pick(kIfaces);
  int proto = int(g.below(5));  // 0 none, 1 tcp, 2 udp, 3 icmp, 4 !tcp
  if (proto == 1) r << " -p tcp";
  if (proto == 2) r << " -p udp";
  if (proto == 3) r << " -p icmp";
  if (proto == 4) r << " ! -p tcp";
  if (g.chance(5)) r << (g.chance(50) ? " -f" : " ! -f");
  int nmatches = int(g.below(4));
  bool port_match = false;
  for (int k = 0; k < nmatches; ++k) {
    switch (g.below(12)) {
      case 0:
        if ((proto == 1 || proto == 2) && !port_match) {
          port_match = true;
          r << (proto == 1 ? " -m tcp" : " -m udp");
          if (g.chance(60)) r << (g.chance(25) ? " ! --dport " : " --dport ") << g.pick(kPorts);
          if (g.chance(30)) r << " --sport " << g.pick(kPorts) << ":" << 9000;
          if (proto == 1 && g.chance(20)) r << (g.chance(30) ? " ! --syn" : " --syn");
        }
        break;
      case 1:
        if (proto == 1 || proto == 2) {
          r << " -m multiport" << (g.chance(20) ? " ! --dports " : " --dports ") << g.pick(kPorts)
            << "," << g.pick(kPorts) << ":" << 9000;
        }
        break;
      case 2:
        if (proto == 3) r << " -m icmp --icmp-type " << (g.chance(50) ? "echo-request" : "3/1");
        break;
      case 3:
        r << " -m mark" << (g.chance(30) ? " ! --mark " : " --mark ") << (g.chance(50) ? "0x4000/0x4000" : "0x1");
        break;
      case 4:
        if (g.chance(20)) {
          r << " -m conntrack --ctstate " << g.pick(kStates) << " --ctdir " << (g.chance(50) ? "ORIGINAL" : "REPLY");
        } else if (g.chance(20)) {
          r << " -m state" << (g.chance(30) ? " ! --state " : " --state ") << (g.chance(50) ? "NEW" : "RELATED,ESTABLISHED");
        } else {
          r << " -m conntrack" << (g.chance(30) ? " ! --ctstate " : " --ctstate ") << g.pick(kStates);
        }
        break;
      case 5:
        r << " -m statistic --mode random --probability " << (g.chance(50) ? "0.5" : "0.25");
        break;
      case 6:
        r << " -m statistic --mode nth --every " << 3 << " --packet " << g.below(3);
        break;
      case 7:
        r << " -m recent --name R" << g.below(2) << (g.chance(50) ? " --set" : " --rcheck --seconds 100");
        break;
      case 8:
        r << " -m length --length " << (g.chance(50) ? "0:100" : "60:1500");
        break;
      case 9:
        r << " -m addrtype" << (g.chance(50) ? " --dst-type LOCAL" : " ! --src-type LOCAL");
        break;
      case 10:
        r << " -m iprange --src-range 10.1.2.0-10.1.2.200";
        break;
      case 11:
        r << " -m comment --comment \"c " << k << "\"";
        break;
    }
  }
  const std::string& t = g.pick(targets);
  if (!t.empty()) r << " " << t;
  return r.str();
}

// Rules shaped like kube-proxy's service dispatch, sometimes with repeated keys.
std::string exact_rule(Gen& g, const std::vector<std::string>& targets) {
  std::ostringstream r;
  if (g.chance(80)) r << " -d " << ip(g.pick(kAddrs));
  r << (g.chance(80) ? " -p tcp -m tcp --dport " : " -p udp -m udp --dport ") << g.pick(kPorts);
  if (g.chance(50)) r << " -m comment --comment svc";
  r << " " << g.pick(targets);
  return r.str();
}

std::string random_ruleset(Gen& g) {
  std::ostringstream out;
  const int user = 1 + int(g.below(5));
  auto table = [&](const char* name, const std::vector<std::string>& builtins,
                   std::vector<std::string> targets, const std::string& prefix) {
    out << "*" << name << "\n";
    for (int u = 0; u < user; ++u) out << ":" << prefix << u << " - [0:0]\n";
    if (g.chance(50)) out << ":" << builtins[0] << " DROP [0:0]\n";
    auto chain_rules = [&](const std::string& chain, int first_callee) {
      std::vector<std::string> t = targets;
      for (int u = first_callee; u < user; ++u) {
        t.push_back("-j " + prefix + std::to_string(u));
        t.push_back("-g " + prefix + std::to_string(u));
      }
      int n = int(g.below(14));
      for (int k = 0; k < n; ++k) {
        if (g.chance(25)) {
          int run = 1 + int(g.below(10));
          for (int q = 0; q < run; ++q) out << "-A " << chain << exact_rule(g, t) << "\n";
        } else {
          out << "-A " << chain << random_rule(g, chain, t) << "\n";
        }
      }
    };
    for (const auto& b : builtins) chain_rules(b, 0);
    for (int u = 0; u < user; ++u) chain_rules(prefix + std::to_string(u), u + 1);
    out << "COMMIT\n";
  };
  table("filter", {"INPUT", "FORWARD", "OUTPUT"},
        {"-j ACCEPT", "-j DROP", "-j RETURN", "", "-j REJECT", "-j MARK --set-xmark 0x1/0xff",
         "-j MARK --or-mark 0x4000", "-j LOG", "-j CONNMARK --save-mark"},
        "F");
  table("mangle", {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
        {"-j ACCEPT", "-j RETURN", "", "-j MARK --xor-mark 0x4000", "-j CONNMARK --set-mark 0x7",
         "-j LOG --log-prefix \"m: \" --log-level 6"},
        "M");
  // nat: DNAT only where PREROUTING/OUTPUT reach, SNAT/MASQUERADE only from POSTROUTING.
  out << "*nat\n:DN0 - [0:0]\n:DN1 - [0:0]\n:SN0 - [0:0]\n";
  for (const char* hook : {"PREROUTING", "OUTPUT"}) {
    int n = int(g.below(8));
    for (int k = 0; k < n; ++k) {
      if (g.chance(40)) {
        out << "-A " << hook << exact_rule(g, {"-j DN0", "-j DN1", "-j ACCEPT", "-j RETURN"}) << "\n";
      } else {
        out << "-A " << hook << random_rule(g, hook, {"-j DN0", "-g DN1", "-j ACCEPT", "-j DNAT --to-destination 10.9.9.9", ""}) << "\n";
      }
    }
  }
  for (const char* c : {"DN0", "DN1"}) {
    int n = int(g.below(6));
    for (int k = 0; k < n; ++k) {
      out << "-A " << c << random_rule(g, c, {"-j DNAT --to-destination 10.8.0.1", "-j RETURN", "-j MARK --or-mark 0x4000", "",
                                               "-j LOG --log-tcp-sequence"}) << "\n";
    }
    if (g.chance(50)) out << "-A " << c << " -p tcp -j DNAT --to-destination 10.8.0.2:8080\n";
  }
  int n = int(g.below(6));
  for (int k = 0; k < n; ++k) {
    out << "-A POSTROUTING" << random_rule(g, "POSTROUTING", {"-j SN0", "-j MASQUERADE", "-j SNAT --to-source 198.18.0.1", "-j RETURN", ""}) << "\n";
  }
  out << "-A SN0 -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A SN0 -j MASQUERADE\n";
  out << "COMMIT\n";
  return out.str();
}

Packet random_packet(Gen& g) {
  Packet p;
  p.src = g.pick(kAddrs);
  p.dst = g.pick(kAddrs);
  const uint8_t protos[] = {6, 17, 1, 47};
  p.proto = protos[g.below(4)];
  p.sport = g.chance(50) ? g.pick(kPorts) : uint16_t(30000 + g.below(100));
  p.dport = g.pick(kPorts);
  p.icmp_type = g.chance(50) ? 8 : 3;
  p.icmp_code = uint8_t(g.below(3));
  p.tcp_flags = g.chance(50) ? 0x02 : 0x10;
  p.length = uint16_t(40 + g.below(1460));
  p.fragment = g.chance(5);
  if (g.chance(80)) p.set_in_iface(g.pick(kIfaces).c_str());
  if (g.chance(80)) p.set_out_iface(g.pick(kIfaces).c_str());
  p.mark = g.chance(30) ? 0x4000 : (g.chance(30) ? 1 : 0);
  p.ct_mark = g.below(3);
  const uint16_t states[] = {ct_state::kNew,     ct_state::kEstablished, ct_state::kRelated,
                             ct_state::kInvalid, ct_state::kUntracked,   ct_state::kNew | ct_state::kDnat};
  p.ct_state = states[g.below(6)];
  p.ct_dir = g.chance(50) ? CtDir::kOriginal : CtDir::kReply;
  p.src_type = g.chance(20) ? addr_type::kLocal : addr_type::kUnicast;
  p.dst_type = g.chance(30) ? addr_type::kLocal : addr_type::kUnicast;
  p.ct_orig = {p.src, p.dst, p.sport, p.dport, p.proto};
  p.ct_reply = {p.dst, p.src, p.dport, p.sport, p.proto};
  return p;
}

// DPGATE_PROPERTY_SEED when set (to replay a printed failure), else `fixed`.
uint64_t property_seed(uint64_t fixed) {
  const char* s = std::getenv("DPGATE_PROPERTY_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : fixed;
}

// Random segment sizes for the compiler (hash runs, classifier runs and
// their length), so that every segment kind meets every rule shape.
CompileOptions random_compile_options(Gen& cg) {
  CompileOptions opt;
  opt.min_hash_run = 1 + cg.below(4);
  opt.min_classifier_run = 1 + cg.below(8);
  opt.max_classifier_rules = 2 + cg.below(100);
  return opt;
}

}  // namespace

TEST_CASE("the compiled Program agrees with the interpreter on random rulesets and packets") {
  const uint64_t seed = property_seed(20240601);
  Gen g(seed);
  int rulesets = 0, packets = 0, hashed = 0, classified = 0, logged = 0;
  for (int round = 0; round < 300; ++round) {
    const uint64_t case_seed = seed * 1000003 + uint64_t(round);
    Gen cg(case_seed);
    const std::string text = random_ruleset(cg);
    auto rs = parse_ruleset(text, "random.rules");
    INFO("seed " << seed << " round " << round << " (DPGATE_PROPERTY_SEED=" << seed << ")\n" << text);
    if (!rs.ok()) FAIL(rs.error().to_string());
    auto prog = compile_ruleset(*rs, random_compile_options(cg));
    REQUIRE(prog.ok());
    hashed += int(prog->stats().hashed_rules);
    classified += int(prog->stats().classified_rules);
    Interpreter interp(*rs);
    SimpleMatchState si(case_seed), sp(case_seed);
    for (int k = 0; k < 100; ++k) {
      Packet p = random_packet(cg);
      Hook hook = Hook(cg.below(kHookCount));
      si.set_now(k);
      sp.set_now(k);
      HookResult a = interp.evaluate(hook, p, si);
      HookResult b = prog->evaluate(hook, p, sp);
      INFO("packet " << k << " hook " << hook_name(hook) << " src " << ip(p.src) << " dst "
                     << ip(p.dst) << " proto " << int(p.proto) << " dport " << p.dport);
      REQUIRE(int(a.action) == int(b.action));
      REQUIRE(a.matched_count == b.matched_count);
      for (size_t q = 0; q < a.matched_count; ++q) REQUIRE(a.matched[q] == b.matched[q]);
      REQUIRE(a.log_count == b.log_count);
      REQUIRE(a == b);  // also the LOG rules passed, with the mark each saw
      logged += a.log_count;
      ++packets;
    }
    ++rulesets;
  }
  WARN("property: " << rulesets << " rulesets, " << packets << " packets; " << hashed
                    << " rules in hash segments, " << classified << " in classifier segments; " << logged
                    << " LOG rules passed");
  CHECK(hashed > 0);
  CHECK(classified > 0);
  CHECK(logged > 0);
}

// The same agreement where string pruning decides most of the walk: long
// runs of string rules (classifier segments that drop rules whose pattern the
// one scan did not find) mixed with negated strings, windows, case folding
// and stateful matches before and after the string match. The stateful
// matches must run exactly as often on both sides: the random draws left
// and the nfacct counters are compared after each ruleset.
TEST_CASE("the Program's string pruning agrees with the interpreter on string-heavy rulesets") {
  const uint64_t seed = property_seed(20240917);
  uint64_t packets = 0, guarded = 0, guarded_segments = 0, matched = 0;
  for (int round = 0; round < 120; ++round) {
    const uint64_t case_seed = seed * 1000003 + uint64_t(round);
    dpgate::testing::StringRulesGen g(case_seed);
    const std::string text = g.ruleset(round % 4 == 0 ? 400 : 40, round % 4 == 1);
    auto rs = parse_ruleset(text, "strings.rules");
    INFO("seed " << seed << " round " << round << " (DPGATE_PROPERTY_SEED=" << seed << ")\n" << text);
    if (!rs.ok()) FAIL(rs.error().to_string());
    CompileOptions opt;
    if (round % 3 != 0) {
      opt.min_classifier_run = 1 + g.below(8);
      opt.max_classifier_rules = 2 + g.below(200);
    }
    auto prog = compile_ruleset(*rs, opt);
    REQUIRE(prog.ok());
    guarded += prog->stats().string_guarded_rules;
    guarded_segments += prog->stats().string_guarded_segments;
    Interpreter interp(*rs);
    SimpleMatchState si(case_seed), sp(case_seed);
    for (int k = 0; k < 80; ++k) {
      const std::string payload = g.payload(64);
      const Packet p = g.packet(payload);
      const Hook hook = g.hook();
      si.set_now(k * 0.05);
      sp.set_now(k * 0.05);
      const HookResult a = interp.evaluate(hook, p, si);
      const HookResult b = prog->evaluate(hook, p, sp);
      INFO("packet " << k << " hook " << hook_name(hook) << " payload '" << payload << "'");
      REQUIRE(int(a.action) == int(b.action));
      REQUIRE(a.matched_count == b.matched_count);
      for (size_t q = 0; q < a.matched_count; ++q) REQUIRE(a.matched[q] == b.matched[q]);
      REQUIRE(a == b);
      matched += a.matched_count;
      ++packets;
    }
    REQUIRE(si.random31() == sp.random31());
    REQUIRE(si.nfacct_packets("N0") == sp.nfacct_packets("N0"));
    REQUIRE(si.nfacct_packets("N1") == sp.nfacct_packets("N1"));
  }
  WARN("string property: " << packets << " packets, " << guarded << " string-guarded rules in "
                           << guarded_segments << " segments of such rules only, " << matched << " rule matches");
  CHECK(guarded > 1000);
  CHECK(guarded_segments > 20);
  CHECK(matched > packets);
}

namespace {

// SimpleMatchState with every random draw the same value: the one thing a
// burst may hand out in another order than one-by-one evaluation.
class FixedDrawState final : public MatchState {
 public:
  FixedDrawState(uint64_t seed, uint32_t draw) : inner_(seed), draw_(draw) {}
  void set_now(double seconds) { inner_.set_now(seconds); }
  uint32_t random31() override { return draw_; }
  bool nth(uint32_t rule_id, uint32_t match_index, const StatisticMatch& m) override {
    return inner_.nth(rule_id, match_index, m);
  }
  bool recent(const RecentCheck& m, const Packet& p) override { return inner_.recent(m, p); }
  bool limit(uint32_t rule_id, uint32_t match_index, const LimitMatch& m) override {
    return inner_.limit(rule_id, match_index, m);
  }
  void nfacct(const NfacctMatch& m, const Packet& p) override { inner_.nfacct(m, p); }
  bool string(const StringMatch& m, const Packet& p) override { return inner_.string(m, p); }

 private:
  SimpleMatchState inner_;
  uint32_t draw_;
};

}  // namespace

// evaluate_burst prefetches what later packets will read while earlier ones
// are evaluated: recent lists and nth counters must still see the packets in
// order (a --set by packet 3 is seen by packet 7's --rcheck), and each packet
// must end as if evaluated alone.
TEST_CASE("a burst gives every packet what one-by-one evaluation gives") {
  const uint64_t seed = property_seed(20251123);
  Gen g(seed);
  int packets = 0, matches = 0;
  for (int round = 0; round < 200; ++round) {
    const uint64_t case_seed = seed * 1000003 + uint64_t(round);
    Gen cg(case_seed);
    const std::string text = random_ruleset(cg);
    auto rs = parse_ruleset(text, "random.rules");
    INFO("seed " << seed << " round " << round << " (DPGATE_PROPERTY_SEED=" << seed << ")\n" << text);
    if (!rs.ok()) FAIL(rs.error().to_string());
    auto prog = compile_ruleset(*rs, random_compile_options(cg));
    REQUIRE(prog.ok());
    const uint32_t draw = cg.below(1u << 31);
    FixedDrawState one(case_seed, draw), burst(case_seed, draw);
    for (int b = 0; b < 4; ++b) {
      const Hook hook = Hook(cg.below(kHookCount));
      const uint32_t count = 1 + cg.below(40);
      std::vector<Packet> in;
      // Few distinct sources, so that recent lists set by one packet are
      // checked by later ones of the same burst.
      for (uint32_t k = 0; k < count; ++k) {
        in.push_back(random_packet(cg));
        in.back().src = kAddrs[cg.below(2)];
      }
      one.set_now(b);
      burst.set_now(b);
      std::vector<Packet> bp = in;
      std::vector<HookResult> br(count);
      prog->evaluate_burst(hook, bp.data(), br.data(), count, burst);
      for (uint32_t k = 0; k < count; ++k) {
        Packet p = in[k];
        HookResult r;
        prog->evaluate(hook, p, one, r);
        INFO("burst " << b << " packet " << k << " of " << count << " hook " << hook_name(hook));
        REQUIRE(r == br[k]);
        REQUIRE(p.dst == bp[k].dst);
        REQUIRE(p.dport == bp[k].dport);
        REQUIRE(p.src == bp[k].src);
        REQUIRE(p.mark == bp[k].mark);
        REQUIRE(p.ct_state == bp[k].ct_state);
        matches += r.matched_count;
        ++packets;
      }
    }
  }
  WARN("burst: " << packets << " packets, " << matches << " rule matches");
  CHECK(packets > 0);
}
