// The iptables-restore parser and the rules compiler on arbitrary text. Never
// a crash; errors carry a position; an accepted Ruleset saves to text that
// parses back to the same save (what `dpgatectl save` prints can be restored);
// and the compiled Program, with default and with aggressive segmentation,
// agrees with the rule-by-rule Interpreter on packets built from the numbers
// and addresses the text mentions.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"
#include "dpgate/rules/save.hpp"
#include "invariant.hpp"

using namespace dpgate;
using namespace dpgate::rules;
using fuzz::invariant;

namespace {

constexpr int kPackets = 24;

// Small deterministic generator (xorshift64*), seeded from the input.
struct Draw {
  uint64_t s;
  uint32_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<uint32_t>((s * 0x2545f4914f6cdd1dull) >> 32);
  }
  template <class T>
  T pick(const std::vector<T>& v) { return v[next() % v.size()]; }
};

// Dotted quads and plain numbers in the text: the values rules test against.
void harvest(std::string_view text, std::vector<uint32_t>& addrs, std::vector<uint16_t>& ports) {
  size_t i = 0;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    uint32_t parts[4] = {};
    int n = 0;
    uint64_t v = 0;
    while (i < text.size() && n < 4) {
      if (std::isdigit(static_cast<unsigned char>(text[i]))) {
        v = std::min<uint64_t>(v * 10 + uint64_t(text[i] - '0'), 1u << 20);
      } else if (text[i] == '.' && n < 3) {
        parts[n++] = static_cast<uint32_t>(v & 255);
        v = 0;
      } else {
        break;
      }
      ++i;
    }
    if (n == 3) {
      parts[3] = static_cast<uint32_t>(v & 255);
      addrs.push_back((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]);
    } else if (n == 0 && v <= 65535) {
      ports.push_back(static_cast<uint16_t>(v));
    }
  }
}

Packet make_packet(Draw& d, const std::vector<uint32_t>& addrs, const std::vector<uint16_t>& ports) {
  static const std::vector<const char*> kIfaces = {"", "eth0", "eth1", "lo", "lan", "wan"};
  static const std::vector<uint8_t> kProtos = {6, 17, 1, 132, 47, 0};
  Packet p;
  p.src = d.pick(addrs) + (d.next() % 4 == 0 ? 1 : 0);
  p.dst = d.pick(addrs);
  p.proto = d.pick(kProtos);
  p.sport = d.pick(ports);
  p.dport = d.pick(ports);
  p.icmp_type = static_cast<uint8_t>(d.next() % 2 ? 8 : d.next() % 16);
  p.icmp_code = static_cast<uint8_t>(d.next() % 4);
  p.tcp_flags = static_cast<uint8_t>(d.next());
  p.length = static_cast<uint16_t>(20 + d.next() % 1500);
  p.ttl = static_cast<uint8_t>(d.next());
  p.fragment = d.next() % 8 == 0;
  p.set_in_iface(d.pick(kIfaces));
  p.set_out_iface(d.pick(kIfaces));
  p.mark = d.next() % 3 == 0 ? d.pick(addrs) : d.next() % 4;
  p.ct_mark = d.next() % 4;
  p.ct_state = static_cast<uint16_t>(1u << (d.next() % 6));
  p.src_type = d.next() % 4 == 0 ? addr_type::kLocal : addr_type::kUnicast;
  p.dst_type = d.next() % 3 == 0 ? addr_type::kLocal : addr_type::kUnicast;
  p.ct_orig = {p.src, p.dst, p.sport, p.dport, p.proto};
  p.ct_reply = {p.dst, p.src, p.dport, p.sport, p.proto};
  return p;
}

void check_agreement(const Ruleset& rs, const CompileOptions& options, uint64_t seed,
                     const std::vector<uint32_t>& addrs, const std::vector<uint16_t>& ports) {
  auto program = compile_ruleset(rs, options);
  if (!program.ok()) {
    invariant(!program.error().message.empty(), "a compile error says why");
    return;
  }
  const Interpreter interpreter(rs);
  SimpleMatchState by_rule(seed), compiled(seed);
  Draw d{seed | 1};
  for (int k = 0; k < kPackets; ++k) {
    const Packet p = make_packet(d, addrs, ports);
    const Hook hook = static_cast<Hook>(d.next() % kHookCount);
    by_rule.set_now(k);
    compiled.set_now(k);
    const HookResult a = interpreter.evaluate(hook, p, by_rule);
    const HookResult b = program->evaluate(hook, p, compiled);
    invariant(a == b, "the compiled Program and the Interpreter agree");
  }
}

// Interface names with characters the kernel refuses (dev_valid_name: space,
// '/', ':') or that need quoting ('"', '\'') are accepted, with a warning, by
// iptables 1.8.9 and by dpgate, and printed unquoted by iptables-save and by
// save_ruleset, so such a save does not restore. Known and reported; the
// round-trip check skips these rulesets so it keeps finding other bugs.
bool has_unquotable_iface(const Ruleset& rs) {
  auto odd = [](const Iface& i) { return i.name.find_first_of(" \t\"'\\/:") != std::string::npos; };
  for (const auto& table : rs.tables) {
    for (const auto& chain : table.chains) {
      for (const auto& rule : chain.rules) {
        if (odd(rule.in) || odd(rule.out)) return true;
      }
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_ruleset(text, "fuzz.rules");
  if (!parsed.ok()) {
    const Error& e = parsed.error();
    invariant(!e.message.empty(), "a parse error says why");
    invariant(e.pos.file == "fuzz.rules", "a parse error names the file");
    invariant(e.pos.line >= 1, "a parse error has a line");
    return 0;
  }
  if (!has_unquotable_iface(*parsed)) {
    const std::string saved = save_ruleset(*parsed);
    auto reparsed = parse_ruleset(saved, "saved.rules");
    if (!reparsed.ok()) {
      std::fprintf(stderr, "%s\n--- saved text ---\n%s", reparsed.error().to_string().c_str(), saved.c_str());
    }
    invariant(reparsed.ok(), "what save_ruleset prints parses again");
    invariant(save_ruleset(*reparsed) == saved, "saving the reparsed text gives the same text");
  }

  std::vector<uint32_t> addrs = {0, 0x0a000001, 0xc0a80101, 0xc6120001, 0xc6130a0a, 0x7f000001, 0xffffffff};
  std::vector<uint16_t> ports = {0, 22, 53, 80, 443, 8080, 30000, 65535};
  harvest(text, addrs, ports);
  uint64_t seed = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) seed = (seed ^ data[i]) * 1099511628211ull;
  check_agreement(*parsed, CompileOptions{}, seed, addrs, ports);
  CompileOptions aggressive;
  aggressive.min_hash_run = 1;
  aggressive.min_classifier_run = 2;
  aggressive.max_classifier_rules = 3;
  check_agreement(*parsed, aggressive, seed, addrs, ports);
  return 0;
}
