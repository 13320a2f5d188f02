// One hook's Program::evaluate for packets of the flows perf/gen-pcap.py
// makes by default (TCP from 198.18.0.2-251 to 198.18.1.x, ports 5001-5016),
// in the conntrack state asked for: what a filter ruleset costs a packet
// apart from the data plane around it. Usage:
//   hook_bench FILE [--hook forward|input|prerouting|postrouting|output]
//              [--state new|established|related|invalid] [--passes N]
// prints one JSON object: TSC cycles per evaluation, fastest and median pass.
// Not a test: numbers, not verdicts.
#include <x86intrin.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"

using namespace dpgate::rules;

namespace {

[[noreturn]] void usage() {
  std::fputs("usage: hook_bench FILE [--hook forward|input|prerouting|postrouting|output]\n"
             "                  [--state new|established|related|invalid] [--passes N]\n",
             stderr);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  const std::map<std::string, Hook> hooks = {{"forward", Hook::kForward},         {"input", Hook::kInput},
                                             {"prerouting", Hook::kPrerouting}, {"postrouting", Hook::kPostrouting},
                                             {"output", Hook::kOutput}};
  const std::map<std::string, uint16_t> states = {{"new", ct_state::kNew},
                                                  {"established", ct_state::kEstablished},
                                                  {"related", ct_state::kRelated},
                                                  {"invalid", ct_state::kInvalid}};
  std::string hook_name = "forward", state_name = "established";
  int passes = 15;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--hook") hook_name = v;
    else if (a == "--state") state_name = v;
    else if (a == "--passes") passes = std::atoi(v);
    else usage();
  }
  if (!hooks.count(hook_name) || !states.count(state_name) || passes < 1) usage();

  std::ifstream in(argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  auto rs = parse_ruleset(text.str(), argv[1]);
  if (!rs) {
    std::fprintf(stderr, "%s\n", rs.error().to_string().c_str());
    return 1;
  }
  auto prog = compile_ruleset(*rs);
  if (!prog) {
    std::fprintf(stderr, "%s\n", prog.error().to_string().c_str());
    return 1;
  }
  std::vector<Packet> packets(1024);
  for (uint32_t i = 0; i < packets.size(); ++i) {
    Packet& p = packets[i];
    p.src = 0xc6120000u | (2 + i % 250);                  // 198.18.0.x
    p.dst = 0xc6120100u | (1 + (i * 7) % 254);            // 198.18.1.x
    p.proto = 6;
    p.sport = uint16_t(1024 + i);
    p.dport = uint16_t(5001 + i % 16);
    p.tcp_flags = 0x10;
    p.length = 60;
    p.ct_state = states.at(state_name);
    p.ct_confirmed = p.ct_state != ct_state::kNew;
    p.set_in_iface("lan");
    p.set_out_iface("wan");
  }
  const Hook hook = hooks.at(hook_name);
  SimpleMatchState state(1);
  HookResult res;
  std::vector<double> cycles;
  unsigned accepted = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const uint64_t t0 = __rdtsc();
    for (int loop = 0; loop < 2000; ++loop) {
      for (const Packet& p : packets) {
        Packet q = p;  // targets may rewrite it
        prog->evaluate(hook, q, state, res);
        accepted += res.action == Action::kAccept;
      }
    }
    cycles.push_back(double(__rdtsc() - t0) / (2000.0 * double(packets.size())));
  }
  std::sort(cycles.begin(), cycles.end());
  std::printf("{\"file\": \"%s\", \"hook\": \"%s\", \"state\": \"%s\", \"accepted_share\": %.3f, "
              "\"min_cycles\": %.1f, \"median_cycles\": %.1f}\n",
              argv[1], hook_name.c_str(), state_name.c_str(),
              double(accepted) / (double(passes) * 2000.0 * double(packets.size())), cycles.front(),
              cycles[cycles.size() / 2]);
  return 0;
}
