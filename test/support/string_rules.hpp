// Random rulesets full of -m string rules and random payloads, for the
// property tests that hold the compiled Program's string pruning to the
// interpreter (test/unit/rules, test/unit/match): long runs of string rules
// mixed with address and port matches, negated strings, --from/--to windows,
// --icase, --hex-string, several string matches in one rule, and statistic,
// recent, limit and nfacct matches before and after the string match.
// Patterns and payloads share a small alphabet so that both found and
// missing patterns are common.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dpgate/rules/packet.hpp"
#include "dpgate/rules/ruleset.hpp"

namespace dpgate::testing {

class StringRulesGen {
 public:
  explicit StringRulesGen(uint64_t seed) : rng_(seed) {}

  uint32_t below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  bool chance(uint32_t percent) { return below(100) < percent; }

  // A filter table whose FORWARD and INPUT chains hold up to `max_rules`
  // rules each, most of them string rules, with jumps into two user chains,
  // and a mangle PREROUTING chain that marks on strings. With `guarded`,
  // nearly every rule's first match is a non-negated string match (the
  // Program's string-guarded segments), as in a gateway's block list.
  std::string ruleset(uint32_t max_rules, bool guarded = false) {
    guarded_ = guarded;
    std::ostringstream out;
    out << "*mangle\n:PREROUTING ACCEPT [0:0]\n";
    for (uint32_t k = below(12); k > 0; --k) {
      out << "-A PREROUTING" << rule({"-j MARK --set-xmark 0x1/0xff", "-j MARK --or-mark 0x4000", "-j RETURN", ""})
          << "\n";
    }
    out << "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD " << (chance(50) ? "DROP" : "ACCEPT")
        << " [0:0]\n:OUTPUT ACCEPT [0:0]\n:S0 - [0:0]\n:S1 - [0:0]\n";
    const std::vector<std::string> base = {"-j ACCEPT", "-j DROP", "-j RETURN", "", "-j MARK --or-mark 0x2",
                                           "-j LOG --log-prefix s"};
    std::vector<std::string> calling = base;
    for (const char* t : {"-j S0", "-g S0", "-j S1"}) calling.push_back(t);
    for (const char* chain : {"FORWARD", "INPUT"}) {
      for (uint32_t k = below(max_rules + 1); k > 0; --k) out << "-A " << chain << rule(calling) << "\n";
    }
    std::vector<std::string> to_s1 = base;
    to_s1.push_back("-j S1");
    for (uint32_t k = below(max_rules / 4 + 2); k > 0; --k) out << "-A S0" << rule(to_s1) << "\n";
    for (uint32_t k = below(max_rules / 4 + 2); k > 0; --k) out << "-A S1" << rule(base) << "\n";
    out << "COMMIT\n";
    return out.str();
  }

  // Bytes from the patterns' alphabet (and a few others), 0..max_len long.
  std::string payload(size_t max_len) {
    std::string s(below(uint32_t(max_len) + 1), '\0');
    for (char& c : s) c = kPayloadBytes[below(sizeof kPayloadBytes - 1)];
    return s;
  }

  uint16_t port() { return kPorts[below(3)]; }
  uint32_t addr() { return kAddrs[below(3)]; }

  // A TCP or UDP datagram between the rule sets' addresses and ports whose
  // payload is `payload` (which must outlive the packet).
  rules::Packet packet(const std::string& payload) {
    rules::Packet p;
    p.src = addr();
    p.dst = addr();
    p.proto = chance(50) ? 6 : 17;
    p.sport = port();
    p.dport = port();
    p.mark = chance(30) ? 1 : 0;
    p.payload = reinterpret_cast<const uint8_t*>(payload.data());
    p.payload_len = uint16_t(payload.size());
    p.length = uint16_t(40 + payload.size());
    return p;
  }

  // A hook the generated chains hang off.
  rules::Hook hook() {
    static constexpr rules::Hook kHooks[] = {rules::Hook::kPrerouting, rules::Hook::kForward, rules::Hook::kInput};
    return kHooks[below(3)];
  }

 private:
  bool guarded_ = false;
  static constexpr char kPatternBytes[] = "abAB";
  static constexpr char kPayloadBytes[] = "abAB.\xe0\xc0z";
  static constexpr uint16_t kPorts[] = {80, 443, 5000};
  static constexpr uint32_t kAddrs[] = {0x0a000001, 0x0a000102, 0xc6120001};  // 10.0.0.1, 10.0.1.2, 198.18.0.1

  std::string pattern_text() {
    const size_t n = 1 + below(4);
    if (chance(20)) {
      // --hex-string with bytes beyond ASCII: Latin-1 case pairs under --icase.
      std::string hex = "\"|";
      const uint8_t bytes[] = {'a', 'B', 0xe0, 0xc0, '.'};
      char buf[4];
      for (size_t k = 0; k < n; ++k) {
        std::snprintf(buf, sizeof buf, "%02x", bytes[below(sizeof bytes)]);
        hex += buf;
      }
      return "--hex-string " + hex + "|\"";
    }
    std::string s;
    for (size_t k = 0; k < n; ++k) s += kPatternBytes[below(sizeof kPatternBytes - 1)];
    return "--string " + s;
  }

  std::string string_match(bool may_negate = true) {
    std::ostringstream m;
    m << " -m string --algo " << (chance(50) ? "bm" : "kmp");
    if (chance(25)) {
      const uint32_t from = below(24);
      m << " --from " << from << " --to " << from + below(40);
    } else if (chance(10)) {
      m << " --to " << below(40);
    }
    if (chance(30)) m << " --icase";
    m << (may_negate && chance(20) ? " ! " : " ") << pattern_text();
    return m.str();
  }

  std::string stateful_match() {
    switch (below(6)) {
      case 0: return " -m statistic --mode random --probability 0.5";
      case 1: return " -m statistic --mode nth --every 3 --packet " + std::to_string(below(3));
      case 2: return std::string(" -m recent --name R") + char('0' + below(2)) + " --set";
      case 3: return std::string(" -m recent --name R") + char('0' + below(2)) + " --rcheck --seconds 100";
      case 4: return " -m limit --limit " + std::to_string(1 + below(5)) + "/sec --limit-burst 2";
      default: return std::string(" -m nfacct --nfacct-name N") + char('0' + below(2));
    }
  }

  std::string rule(const std::vector<std::string>& targets) {
    std::ostringstream r;
    if (chance(20)) r << (chance(25) ? " ! -s " : " -s ") << (chance(50) ? "10.0.0.0/16" : "10.0.0.1");
    const uint32_t proto = below(3);  // none, tcp, udp
    if (proto != 0) r << (proto == 1 ? " -p tcp" : " -p udp");
    if (proto != 0 && chance(50)) r << (proto == 1 ? " -m tcp" : " -m udp") << " --dport " << port();
    if (guarded_ && chance(97)) r << string_match(false);
    for (uint32_t k = below(3) + (guarded_ ? 0 : 1); k > 0; --k) {
      const uint32_t kind = below(10);
      if (kind < 6) {
        r << string_match();
      } else if (kind < 8) {
        r << stateful_match();
      } else if (kind == 8) {
        r << " -m mark " << (chance(30) ? "! " : "") << "--mark 0x1/0xff";
      } else {
        r << " -m length --length " << (chance(50) ? "0:100" : "60:1500");
      }
    }
    const std::string& t = targets[below(uint32_t(targets.size()))];
    if (!t.empty()) r << " " << t;
    return r.str();
  }

  std::mt19937_64 rng_;
};

}  // namespace dpgate::testing
