// Parser behaviour a user notices: positions in errors, whole-file rejection,
// --noflush, semantic checks. Output text is checked by test/oracle.
#include <catch2/catch.hpp>

#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/save.hpp"

using namespace dpgate::rules;

namespace {
std::string error_of(const std::string& text, const ParseOptions& o = {}) {
  auto rs = parse_ruleset(text, "f.rules", o);
  return rs.ok() ? std::string("(accepted)") : rs.error().to_string();
}
}  // namespace

TEST_CASE("an unknown option is reported with file, line, column and the token") {
  CHECK(error_of("*filter\n-A INPUT -p tcp --dprot 80 -j ACCEPT\nCOMMIT\n") ==
        "f.rules:2:17: unknown option '--dprot'");
  CHECK(error_of("*filter\n-A INPUT -j ACCEPT extra\nCOMMIT\n") ==
        "f.rules:2:20: expected an option but found 'extra'");
  CHECK(error_of("*filter\n-A INPUT -s 1.2.3.400 -j ACCEPT\nCOMMIT\n") ==
        "f.rules:2:13: expected an IPv4 address[/mask] but found '1.2.3.400'");
  CHECK(error_of("*filtre\nCOMMIT\n") ==
        "f.rules:1:2: expected a table (raw, mangle, nat, filter) but found 'filtre'");
  CHECK(error_of("*filter\n-A INPUT -m comment --comment \"open\nCOMMIT\n") ==
        "f.rules:2:31: expected a closing '\"' but found end of line");
}

TEST_CASE("a file without COMMIT is rejected whole") {
  CHECK(error_of("*filter\n-A INPUT -j ACCEPT\n") ==
        "f.rules:3:1: expected COMMIT for table 'filter' but found end of file");
}

TEST_CASE("semantic errors name the rule that causes them") {
  CHECK(error_of("*filter\n-A INPUT -j NOWHERE\nCOMMIT\n").rfind("f.rules:2:1: expected a target or a chain", 0) == 0);
  CHECK(error_of("*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n")
            .find("loop-free") != std::string::npos);
  CHECK(error_of("*nat\n-A POSTROUTING -j DNAT --to-destination 1.2.3.4\nCOMMIT\n") ==
        "f.rules:2:1: expected DNAT only in nat PREROUTING/OUTPUT but chain 'POSTROUTING' is "
        "reached from POSTROUTING");
  CHECK(error_of("*filter\n-A INPUT -j DNAT --to-destination 1.2.3.4\nCOMMIT\n")
            .find("only valid in the nat table") != std::string::npos);
  CHECK(error_of("*filter\n:USER ACCEPT [0:0]\nCOMMIT\n") ==
        "f.rules:2:7: expected '-' (a user chain has no policy) but found 'ACCEPT'");
  CHECK(error_of("*filter\n:USER - [0:0]\n-P USER DROP\nCOMMIT\n") ==
        "f.rules:3:4: expected a built-in chain for -P but found user chain 'USER'");
}

TEST_CASE("a target's hooks are checked through every chain that leads to it, however deep") {
  // Declared deepest first: a hook reaches A through C and B.
  const std::string chains = "*nat\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n-A C -j B\n-A B -j A\n"
                             "-A A -p tcp -j DNAT --to-destination 198.18.0.2\n";
  CHECK(error_of(chains + "-A PREROUTING -j C\nCOMMIT\n") == "(accepted)");
  CHECK(error_of(chains + "-A PREROUTING -j C\n-A POSTROUTING -j C\nCOMMIT\n") ==
        "f.rules:7:1: expected DNAT only in nat PREROUTING/OUTPUT but chain 'A' is reached from POSTROUTING");
  // Two paths, one of them from INPUT: reported once, with the hook.
  CHECK(error_of(chains + "-A PREROUTING -j C\n-A INPUT -j B\nCOMMIT\n") ==
        "f.rules:7:1: expected DNAT only in nat PREROUTING/OUTPUT but chain 'A' is reached from INPUT");
}

TEST_CASE("a failed apply leaves the running ruleset untouched") {
  auto base = parse_ruleset("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", "a");
  REQUIRE(base.ok());
  const std::string before = save_ruleset(*base);
  auto next = apply_ruleset(*base, "*filter\n-A INPUT -j DROP\n-A INPUT -j BAD\nCOMMIT\n", "b");
  CHECK_FALSE(next.ok());
  CHECK(save_ruleset(*base) == before);
}

TEST_CASE("--noflush keeps other chains, flushes declared ones and deletes with -X") {
  auto base = parse_ruleset(
      "*nat\n:KEEP - [0:0]\n:SVC - [0:0]\n:OLD - [0:0]\n-A KEEP -j RETURN\n-A SVC -j RETURN\n"
      "-A OLD -j RETURN\nCOMMIT\n",
      "a");
  REQUIRE(base.ok());
  auto next = apply_ruleset(*base, "*nat\n:SVC - [0:0]\n:OLD - [0:0]\n-A SVC -j MASQUERADE\n-X OLD\nCOMMIT\n",
                            "b", ParseOptions{true});
  REQUIRE(next.ok());
  const Table& nat = next->table(TableId::kNat);
  REQUIRE(nat.find("KEEP") != nullptr);
  CHECK(nat.find("KEEP")->rules.size() == 1);
  REQUIRE(nat.find("SVC") != nullptr);
  CHECK(nat.find("SVC")->rules.size() == 1);
  CHECK(std::holds_alternative<NatTarget>(nat.find("SVC")->rules[0].target));
  CHECK(nat.find("OLD") == nullptr);
  // Without --noflush the table starts over.
  auto flushed = apply_ruleset(*base, "*nat\nCOMMIT\n", "c");
  REQUIRE(flushed.ok());
  CHECK(flushed->table(TableId::kNat).find("KEEP") == nullptr);
}

TEST_CASE("quoted arguments group words and keep escaped quotes") {
  auto toks = tokenize_line(R"(-A INPUT -m comment --comment "a \"b\" c" -j ACCEPT)", SourcePos{});
  REQUIRE(toks.ok());
  REQUIRE(toks->size() == 8);
  CHECK((*toks)[5].text == "a \"b\" c");
  CHECK((*toks)[5].col == 31);
}

TEST_CASE("kube-proxy's mark, probability and recent forms are kept as data") {
  auto rs = parse_ruleset(
      "*nat\n:S - [0:0]\n-A S -m statistic --mode random --probability 0.33333333349 -j RETURN\n"
      "-A S -m recent --name X --rcheck --seconds 10800 --reap -j RETURN\n"
      "-A S -j MARK --or-mark 0x4000\nCOMMIT\n",
      "k");
  REQUIRE(rs.ok());
  const auto& rules = rs->table(TableId::kNat).find("S")->rules;
  CHECK(std::get<StatisticMatch>(rules[0].matches[0]).probability == 715827883u);
  const auto& recent = std::get<RecentMatch>(rules[1].matches[0]);
  CHECK(recent.seconds == 10800);
  CHECK(recent.reap);
  CHECK(recent.name == "X");
  const auto& mark = std::get<MarkTarget>(rules[2].target);
  CHECK(mark.value == 0x4000);
  CHECK(mark.mask == 0x4000);
}

TEST_CASE("names from /etc/protocols and /etc/services read the same on every rule of a file") {
  // One parse remembers each name's answer (names::LookupCache): the second
  // and third rules must resolve as the first, a port that is a number must
  // never be taken for a name, and a name with a '-' must not be taken for a
  // range.
  std::string text = "*nat\n";
  for (int i = 0; i < 3; ++i) {
    text += "-A PREROUTING -p TCP --dport ssh -j DNAT --to-destination 198.18.0.9:ms-sql-s\n";
    text += "-A PREROUTING -p udp --dport domain -j DNAT --to-destination 198.18.0.9:8080\n";
  }
  text += "COMMIT\n";
  auto rs = parse_ruleset(text, "f.rules");
  REQUIRE(rs.ok());
  const std::string saved = save_ruleset(rs.value());
  const std::string tcp = "-A PREROUTING -p tcp -m tcp --dport 22 -j DNAT --to-destination 198.18.0.9:1433\n";
  const std::string udp = "-A PREROUTING -p udp -m udp --dport 53 -j DNAT --to-destination 198.18.0.9:8080\n";
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    at = saved.find(tcp, at);
    REQUIRE(at != std::string::npos);
    at = saved.find(udp, at);
    REQUIRE(at != std::string::npos);
  }
  // An unknown name fails on its second use too, at that use's position.
  CHECK(error_of("*filter\n-A INPUT -p tcp --dport ssh -j ACCEPT\n-A INPUT -p tcp --dport nosuchsvc -j ACCEPT\n"
                 "-A INPUT -p nosuchproto -j ACCEPT\nCOMMIT\n")
            .rfind("f.rules:3:", 0) == 0);
  CHECK(error_of("*filter\n-A INPUT -p nosuchproto -j ACCEPT\n-A INPUT -p nosuchproto -j ACCEPT\nCOMMIT\n")
            .rfind("f.rules:2:", 0) == 0);
}
