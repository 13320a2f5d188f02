// What the control commands read and print: `dpgatectl conntrack` arguments
// become a filter and any bad one is an error reply, never an exception that
// would take the daemon down; `dpgatectl list` rows are whole lines.
#include <catch2/catch.hpp>

#include <atomic>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "dpgate/control/commands.hpp"
#include "dpgate/control/rules_manager.hpp"

using namespace dpgate;
using namespace dpgate::control;

namespace {

std::string error_of(const std::vector<std::string>& args) {
  auto parsed = parse_conntrack_args(args);
  REQUIRE(std::holds_alternative<std::string>(parsed));
  return std::get<std::string>(parsed);
}

}  // namespace

TEST_CASE("conntrack filters in conntrack-tools' words become a flow filter") {
  auto parsed = parse_conntrack_args({"-D", "-p", "17", "-s", "198.18.1.2", "--dport", "53", "-m", "0x10/0xf0"});
  REQUIRE(std::holds_alternative<ConntrackCommand>(parsed));
  const auto& cmd = std::get<ConntrackCommand>(parsed);
  CHECK(cmd.op == 'D');
  CHECK(cmd.filter.proto == 17);
  CHECK(cmd.filter.orig_src == net::IpAddr::from_v4(net::to_be32(0xc6120102)));
  CHECK(cmd.filter.orig_dport == net::to_be16(53));
  CHECK(cmd.filter.mark == 0x10u);
  CHECK(cmd.filter.mark_mask == 0xf0u);
}

TEST_CASE("conntrack numbers out of range are errors, however many digits they have") {
  // Seen while writing control_fuzz, which reproduces it: more digits than an
  // unsigned long holds threw std::out_of_range out of the handler and
  // terminated dpgate.
  CHECK(error_of({"-L", "-p", "99999999999999999999"}) == "unknown protocol '99999999999999999999'");
  CHECK(error_of({"-L", "-p", "256"}) == "unknown protocol '256'");
  CHECK(error_of({"-L", "-p", "+6"}) == "unknown protocol '+6'");
  CHECK(error_of({"-L", "--sport", "99999999999999999999"}) == "--sport needs a port number");
  CHECK(error_of({"-L", "--dport", "65536"}) == "--dport needs a port number");
  CHECK(error_of({"-L", "--orig-port-src", "-1"}) == "--orig-port-src needs a port number");
  CHECK(error_of({"-L", "-m", "99999999999999999999"}) == "bad mark '99999999999999999999'");
  CHECK(error_of({"-L", "--dport"}) == "--dport needs a port number");
}

TEST_CASE("list prints a rule with a long comment and string matches whole, one row per line") {
  // control_fuzz's "a reply's text is whole lines": rows were cut at 511
  // bytes, losing the newline, and the next row was glued on.
  std::atomic<const dataplane::PublishedRules*> slot{nullptr};
  RulesManager rules(slot, nullptr, 1);
  const std::string comment(250, 'c'), pattern(120, 's');
  const std::string text = "*filter\n:FORWARD DROP [0:0]\n"
                           "-A FORWARD -p tcp -m comment --comment \"" + comment + "\" -m string --algo bm --string \"" +
                           pattern + "\" -m string --algo kmp --string \"" + pattern + "\" -j ACCEPT\n"
                           "-A FORWARD -p udp -j ACCEPT\nCOMMIT\n";
  auto applied = rules.apply(text, "long.rules", false, false);
  REQUIRE(std::holds_alternative<ApplyResult>(applied));
  auto [ok, listing] = rules.list("filter", "FORWARD", false);
  REQUIRE(ok);
  std::vector<std::string> lines;
  std::istringstream in(listing);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 4);  // chain header, column header, two rules
  CHECK(listing.back() == '\n');
  CHECK_THAT(lines[2], Catch::StartsWith("    0     0 ACCEPT     tcp") && Catch::Contains(comment) &&
                           Catch::EndsWith("--algo kmp"));
  CHECK_THAT(lines[3], Catch::StartsWith("    0     0 ACCEPT     udp"));
}
