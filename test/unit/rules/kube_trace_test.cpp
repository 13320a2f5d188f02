// kube-proxy's own TestTracePacket (../shared/fixtures/kube-proxy): its rule
// set and the outcome kube-proxy's tests expect for 7 packets, run through
// dpgate's interpreter and compiled Program. Usage: kube_trace_test FIXTURES_DIR
// (exits 77, skipped, when the fixtures are absent).
//
// The fixture writes some comments unquoted over several words, which the
// real iptables-restore rejects and so does dpgate (deliberately); this test
// quotes them first, as kube-proxy's real output does.
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"

using namespace dpgate::rules;

namespace {

struct Flow {
  std::string name, source, dest, proto, output;
  uint16_t dport = 0;
  bool masq = false;
};

uint32_t ip(const std::string& s) {
  unsigned a, b, c, d;
  std::sscanf(s.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d);
  return (a << 24) | (b << 16) | (c << 8) | d;
}

std::string ip_text(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
         "." + std::to_string(a & 255);
}

// Quotes "--comment a b c" up to the next option.
std::string quote_comments(const std::string& text) {
  std::istringstream in(text);
  std::string out, line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string t; words >> t;) w.push_back(t);
    std::string fixed;
    for (size_t i = 0; i < w.size(); ++i) {
      fixed += (fixed.empty() ? "" : " ") + w[i];
      if (w[i] == "--comment" && i + 1 < w.size() && w[i + 1][0] != '"') {
        std::string c;
        while (i + 1 < w.size() && w[i + 1][0] != '-') c += (c.empty() ? "" : " ") + w[++i];
        fixed += " \"" + c + "\"";
      }
    }
    out += (w.empty() ? line : fixed) + "\n";
  }
  return out;
}

// A minimal reader for the fixture's JSON (flat objects of strings, numbers, booleans).
std::string field(const std::string& obj, const std::string& key) {
  const size_t k = obj.find("\"" + key + "\"");
  if (k == std::string::npos) return "";
  size_t v = obj.find(':', k) + 1;
  while (obj[v] == ' ') ++v;
  if (obj[v] == '"') return obj.substr(v + 1, obj.find('"', v + 1) - v - 1);
  size_t e = v;
  while (e < obj.size() && obj[e] != ',' && obj[e] != '\n' && obj[e] != '}') ++e;
  return obj.substr(v, e - v);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string dir = std::string(argv[1]) + "/kube-proxy/";
  std::ifstream rules_in(dir + "TestTracePacket-1.rules"), flows_in(dir + "TestTracePacket-1.flows.json");
  if (!rules_in || !flows_in) {
    std::cout << "fixtures absent: skipped\n";
    return 77;
  }
  std::stringstream rs_text, flows_text;
  rs_text << rules_in.rdbuf();
  flows_text << flows_in.rdbuf();
  const std::string raw = rs_text.str();
  if (parse_ruleset(raw, "TestTracePacket-1.rules").ok()) {
    std::cout << "FAIL: the unquoted multi-word comments were accepted (the real iptables-restore rejects them)\n";
    return 1;
  }
  auto rs = parse_ruleset(quote_comments(raw), "TestTracePacket-1.rules (comments quoted)");
  if (!rs.ok()) {
    std::cout << "FAIL: " << rs.error().to_string() << "\n";
    return 1;
  }
  auto prog = compile_ruleset(*rs);
  Interpreter interp(*rs);

  const std::string json = flows_text.str();
  std::set<uint32_t> local;
  {
    const size_t a = json.find("\"local_ips\""), b = json.find(']', a);
    std::istringstream ips(json.substr(a, b - a));
    for (std::string t; std::getline(ips, t, '"');) {
      if (t.find('.') != std::string::npos && t.find(':') == std::string::npos) local.insert(ip(t));
    }
  }
  std::vector<Flow> flows;
  for (size_t at = json.find("\"flows\""); (at = json.find('{', at)) != std::string::npos; ++at) {
    const std::string obj = json.substr(at, json.find('}', at) - at);
    flows.push_back({field(obj, "name"), field(obj, "source"), field(obj, "dest"), field(obj, "proto"),
                     field(obj, "output"), static_cast<uint16_t>(std::stoi(field(obj, "dport"))),
                     field(obj, "masq") == "true"});
  }

  int passed = 0, failed = 0;
  for (const Flow& f : flows) {
    std::set<std::string> dnat;
    std::set<std::string> verdicts;
    bool masq = false, agree = true, explicit_accept = false;
    for (uint64_t seed = 1; seed <= 300; ++seed) {
      Packet p;
      p.src = ip(f.source);
      p.dst = ip(f.dest);
      p.proto = f.proto == "udp" ? 17 : 6;
      p.sport = 40000;
      p.dport = f.dport;
      p.src_type = local.count(p.src) ? addr_type::kLocal : addr_type::kUnicast;
      p.dst_type = local.count(p.dst) ? addr_type::kLocal : addr_type::kUnicast;
      p.ct_state = ct_state::kNew;
      const bool from_local = local.count(p.src) != 0;
      const Hook nat_hook = from_local ? Hook::kOutput : Hook::kPrerouting;
      SimpleMatchState a(seed), b(seed);
      HookResult x = interp.evaluate(nat_hook, p, a);
      HookResult y = prog->evaluate(nat_hook, p, b);
      agree = agree && x == y;
      if (x.mark & 0x4000) masq = true;
      Packet q = p;
      q.mark = x.mark;
      if (x.has_dnat) {
        dnat.insert(ip_text(x.dnat.min_addr) + ":" + std::to_string(x.dnat.min_port));
        q.dst = x.dnat.min_addr;
        q.dport = x.dnat.min_port;
        q.dst_type = local.count(q.dst) ? addr_type::kLocal : addr_type::kUnicast;
        q.ct_state |= ct_state::kDnat;
      }
      // As kube-proxy's tracer: a local source passes filter OUTPUT; a local
      // destination (after DNAT) then filter INPUT, any other FORWARD.
      std::vector<Hook> filter_hooks;
      if (from_local) filter_hooks.push_back(Hook::kOutput);
      filter_hooks.push_back(local.count(q.dst) ? Hook::kInput : Hook::kForward);
      if (from_local && !local.count(q.dst)) filter_hooks.pop_back();
      for (Hook filter_hook : filter_hooks) {
        HookResult fx = interp.evaluate(filter_hook, q, a);
        HookResult fy = prog->evaluate(filter_hook, q, b);
        agree = agree && fx == fy;
        if (fx.action == Action::kDrop) verdicts.insert("DROP");
        if (fx.action == Action::kReject) verdicts.insert("REJECT");
        if (fx.action != Action::kAccept) break;
        // Accepted by an ACCEPT rule (the last rule that matched), not by a policy.
        if (fx.matched_count > 0) {
          const RuleIds ids = rule_ids(*rs);
          const uint32_t last = fx.matched[fx.matched_count - 1];
          for (size_t t = 0; t < rs->tables.size(); ++t) {
            for (size_t c = 0; c < rs->tables[t].chains.size(); ++c) {
              const auto& rules = rs->tables[t].chains[c].rules;
              if (last >= ids.base[t][c] && last < ids.base[t][c] + rules.size()) {
                const auto* v = std::get_if<VerdictTarget>(&rules[last - ids.base[t][c]].target);
                explicit_accept = explicit_accept || (v != nullptr && v->verdict == Verdict::kAccept);
              }
            }
          }
        }
      }
    }
    std::string got;
    if (verdicts.count("DROP")) {
      got = "DROP";
    } else if (verdicts.count("REJECT")) {
      got = "REJECT";
    } else if (!dnat.empty()) {
      for (const auto& d : dnat) got += (got.empty() ? "" : ", ") + d;
    } else if (explicit_accept) {
      got = "ACCEPT";
    }
    const bool ok = got == f.output && masq == f.masq && agree;
    (ok ? passed : failed)++;
    std::cout << (ok ? "ok:   " : "FAIL: ") << f.name << ": got '" << got << "' masq " << masq << ", want '" << f.output
              << "' masq " << f.masq << (agree ? "" : " (Program and interpreter differ)") << "\n";
  }
  std::cout << "test cases: " << passed + failed << " | " << passed << " passed | " << failed << " failed\n";
  return failed == 0 && passed == 7 ? 0 : 1;
}
