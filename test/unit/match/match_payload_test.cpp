// -m string through the Hyperscan database: every option and edge as the
// kernel's xt_string answers it (skb_find_text, Linux >= 6.7), pattern ids
// mapped back to rules, and one scan per packet and hook in the data plane.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "dpgate/dataplane/match_state.hpp"
#include "dpgate/dataplane/published_rules.hpp"
#include "dpgate/match/payload.hpp"
#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"

using namespace dpgate;
using rules::StringMatch;

namespace {

rules::Ruleset parse(const std::string& text) {
  auto rs = rules::parse_ruleset(text, "t.rules");
  if (!rs.ok()) FAIL(rs.error().to_string());
  return *rs;
}

// The string matches of a ruleset, in order.
std::vector<StringMatch> strings_of(const rules::Ruleset& rs) {
  std::vector<StringMatch> out;
  for (const auto& t : rs.tables) {
    for (const auto& c : t.chains) {
      for (const auto& r : c.rules) {
        for (const auto& m : r.matches) {
          if (const auto* s = std::get_if<StringMatch>(&m)) out.push_back(*s);
        }
      }
    }
  }
  return out;
}

// One -m string rule per line of `matches` in filter FORWARD.
std::string filter_rules(const std::vector<std::string>& matches) {
  std::string text = "*filter\n:FORWARD ACCEPT [0:0]\n";
  for (const auto& m : matches) text += "-A FORWARD -m string " + m + " -j DROP\n";
  return text + "COMMIT\n";
}

// The database's answer and the reference's for one match and datagram;
// requires that they agree and returns it.
struct Fixture {
  rules::Ruleset rs;
  match::PayloadDatabase db;
  std::vector<StringMatch> strings;

  explicit Fixture(const std::vector<std::string>& matches) : rs(parse(filter_rules(matches))) {
    auto built = match::PayloadDatabase::build(rs);
    if (!built.ok()) FAIL(built.error().to_string());
    db = std::move(*built);
    strings = strings_of(rs);
  }
  bool hit(size_t which, const std::string& data) {
    match::PayloadScanner scanner(db);
    const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
    const bool fast = scanner.matches(strings[which], bytes, data.size());
    const bool reference = match::find_text(strings[which], bytes, data.size());
    REQUIRE(fast == reference);
    return fast;
  }
};

std::string at(size_t offset, const std::string& pattern, size_t total) {
  std::string s(total, '.');
  s.replace(offset, pattern.size(), pattern);
  return s;
}

}  // namespace

TEST_CASE("the kernel's toupper folds ASCII and Latin-1 as lib/ctype.c does") {
  CHECK(match::kernel_toupper('a') == 'A');
  CHECK(match::kernel_toupper('z') == 'Z');
  CHECK(match::kernel_toupper('A') == 'A');
  CHECK(match::kernel_toupper('{') == '{');
  CHECK(match::kernel_toupper(0xE0) == 0xC0);
  CHECK(match::kernel_toupper(0xFE) == 0xDE);
  CHECK(match::kernel_toupper(0xF7) == 0xF7);  // division sign is punctuation
  CHECK(match::kernel_toupper(0xDF) == 0xBF);  // sharp s is "lower case" in the table
  CHECK(match::kernel_toupper(0xFF) == 0xDF);
  CHECK(match::kernel_toupper(0xD7) == 0xD7);
}

TEST_CASE("a pattern is found at the first and at the last byte of the datagram") {
  Fixture f({"--string abc --algo bm"});
  CHECK(f.hit(0, at(0, "abc", 60)));
  CHECK(f.hit(0, at(57, "abc", 60)));
  CHECK_FALSE(f.hit(0, at(58, "ab", 60)));  // cut short by the end
  CHECK(f.hit(0, "abc"));
  CHECK_FALSE(f.hit(0, "ab"));
}

TEST_CASE("an empty datagram matches nothing") {
  Fixture f({"--string a --algo kmp"});
  CHECK_FALSE(f.hit(0, ""));
  match::PayloadScanner scanner(f.db);
  CHECK_FALSE(scanner.matches(f.strings[0], nullptr, 0));
}

TEST_CASE("--from is the first offset the pattern may start at") {
  Fixture f({"--string xyz --algo bm --from 20"});
  CHECK_FALSE(f.hit(0, at(19, "xyz", 40)));
  CHECK(f.hit(0, at(20, "xyz", 40)));
  CHECK(f.hit(0, at(37, "xyz", 40)));
  CHECK_FALSE(f.hit(0, at(0, "xyz", 13)));  // a datagram shorter than --from
}

TEST_CASE("--to is the offset the whole pattern must end before, as Linux >= 6.7") {
  Fixture f({"--string xyz --algo bm --to 30"});
  CHECK(f.hit(0, at(27, "xyz", 60)));        // bytes 27..29
  CHECK_FALSE(f.hit(0, at(28, "xyz", 60)));  // extends across --to
  CHECK_FALSE(f.hit(0, at(30, "xyz", 60)));
  CHECK(f.hit(0, at(0, "xyz", 60)));
}

TEST_CASE("--from and --to together, and a window too small for the pattern") {
  Fixture f({"--string abcd --algo kmp --from 10 --to 14", "--string abcd --algo kmp --from 10 --to 13"});
  CHECK(f.hit(0, at(10, "abcd", 40)));
  CHECK_FALSE(f.hit(0, at(9, "abcd", 40)));
  CHECK_FALSE(f.hit(0, at(11, "abcd", 40)));
  CHECK_FALSE(f.hit(1, at(10, "abcd", 40)));
  CHECK(f.db.scanned_count() == 1);  // the second can never match: not in the database
}

TEST_CASE("only the window from the least --from to the greatest --to is scanned, offsets still absolute") {
  Fixture f({"--string abcd --algo bm --from 20 --to 40", "--string wxyz --algo bm --from 30 --to 60",
             "--string abcd --algo bm --from 20 --to 23"});  // cannot fit: leaves the window alone
  CHECK(f.db.window_begin() == 20);
  CHECK(f.db.window_end() == 60);
  CHECK_FALSE(f.hit(0, at(19, "abcd", 80)));
  CHECK(f.hit(0, at(20, "abcd", 80)));  // the window's first byte
  CHECK(f.hit(0, at(36, "abcd", 80)));
  CHECK_FALSE(f.hit(0, at(37, "abcd", 80)));  // across its own --to, inside the window
  CHECK_FALSE(f.hit(1, at(29, "wxyz", 80)));  // before its own --from, inside the window
  CHECK(f.hit(1, at(30, "wxyz", 80)));
  CHECK(f.hit(1, at(56, "wxyz", 80)));  // ends at the window's end
  CHECK_FALSE(f.hit(1, at(57, "wxyz", 80)));
  CHECK(f.hit(1, at(56, "wxyz", 60)));  // a datagram that ends with the window
  CHECK_FALSE(f.hit(1, at(0, "wxyz", 20)));  // one that ends before it
  CHECK_FALSE(f.hit(0, at(16, "abcd", 20)));
  Fixture open({"--string abcd --algo bm", "--string wxyz --algo bm --from 5 --to 9"});
  CHECK(open.db.window_begin() == 0);
  CHECK(open.db.window_end() == 65535);
  CHECK(open.hit(0, at(1400, "abcd", 1404)));
  CHECK(open.hit(1, at(5, "wxyz", 1404)));
  CHECK_FALSE(open.hit(1, at(4, "wxyz", 1404)));
  CHECK_FALSE(open.hit(1, at(6, "wxyz", 1404)));
}

TEST_CASE("--icase folds both sides with the kernel's toupper") {
  Fixture f({"--string GeT --algo bm --icase", "--string GeT --algo bm", "--hex-string |e0df| --algo bm --icase",
             "--hex-string |ff| --algo kmp --icase"});
  CHECK(f.hit(0, at(3, "get", 20)));
  CHECK(f.hit(0, at(3, "GET", 20)));
  CHECK_FALSE(f.hit(0, at(3, "GEU", 20)));
  CHECK_FALSE(f.hit(1, at(3, "get", 20)));
  CHECK(f.hit(1, at(3, "GeT", 20)));
  CHECK(f.hit(2, at(3, "\xc0\xbf", 20)));
  CHECK(f.hit(2, at(3, "\xe0\xdf", 20)));
  CHECK_FALSE(f.hit(2, at(3, "\xc0\xff", 20)));
  CHECK(f.hit(3, at(3, "\xff", 20)));
  CHECK_FALSE(f.hit(3, at(3, "\xdf", 20)));  // toupper(0xdf) is 0xbf, not 0xdf
}

TEST_CASE("--hex-string bytes are literal, regex metacharacters and NUL included") {
  Fixture f({"--hex-string |00|.*(|5c|[ --algo bm", "--string a.c --algo bm"});
  CHECK(f.hit(0, at(5, std::string("\0.*(\\[", 6), 30)));
  CHECK_FALSE(f.hit(0, at(5, std::string("\0xx(\\[", 6), 30)));
  CHECK(f.hit(1, at(5, "a.c", 30)));
  CHECK_FALSE(f.hit(1, at(5, "abc", 30)));
}

TEST_CASE("pattern ids map back to every rule and match position that uses them") {
  auto rs = parse(
      "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
      "-A INPUT -p tcp -m string --string evil --algo bm -j DROP\n"
      "-A FORWARD -p tcp -m tcp --dport 80 -m string --string evil --algo kmp -j DROP\n"
      "-A FORWARD -m string --string evil --algo bm --icase -m string --string worse --algo bm -j DROP\n"
      "COMMIT\n");
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE(db.ok());
  REQUIRE(db->pattern_count() == 3);
  auto strings = strings_of(rs);
  const uint32_t evil = db->find(strings[0]);
  CHECK(db->find(strings[1]) == evil);  // --algo does not make a new pattern
  CHECK(db->users(evil) == std::vector<match::PatternUser>{{0, 0}, {1, 1}});
  CHECK(db->users(db->find(strings[2])) == std::vector<match::PatternUser>{{2, 0}});
  CHECK(db->users(db->find(strings[3])) == std::vector<match::PatternUser>{{2, 1}});
  StringMatch other;
  other.pattern = "absent";
  CHECK(db->find(other) == match::PayloadDatabase::kNoPattern);
}

TEST_CASE("1000 patterns share one database and one scan finds exactly the ones present") {
  std::vector<std::string> matches;
  for (int i = 0; i < 1000; ++i) matches.push_back("--string pat" + std::to_string(i) + "x --algo bm");
  Fixture f(matches);
  REQUIRE(f.db.pattern_count() == 1000);
  REQUIRE(f.db.scanned_count() == 1000);
  const std::string data = at(100, "pat999x", 400).replace(20, 6, "pat17x");
  std::vector<uint64_t> bits(f.db.words());
  match::PayloadScanner scanner(f.db);
  uint32_t found = 0;
  for (size_t i = 0; i < f.strings.size(); ++i) {
    const bool hit = scanner.matches(f.strings[i], reinterpret_cast<const uint8_t*>(data.data()), data.size());
    found += hit;
    CHECK(hit == (i == 17 || i == 999));
  }
  CHECK(found == 2);
  CHECK(scanner.scans() == 1);
}

TEST_CASE("a pattern the ruleset cannot hold is a rule error with its file and line") {
  auto rs = parse(filter_rules({"--string ok --algo bm", "--string fine --algo bm"}));
  rules::Chain* forward = rs.tables[size_t(rules::TableId::kFilter)].find("FORWARD");
  REQUIRE(forward != nullptr);
  std::get<StringMatch>(forward->rules[1].matches[0]).pattern.clear();
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE_FALSE(db.ok());
  CHECK(db.error().to_string().rfind("t.rules:4:", 0) == 0);
}

TEST_CASE("the data plane scans a packet once per hook, whatever the number of string rules") {
  std::vector<std::string> matches;
  for (int i = 0; i < 50; ++i) matches.push_back("--string needle" + std::to_string(i) + " --algo bm");
  matches.push_back("! --string needle7 --algo bm");
  rules::Ruleset rs = parse(filter_rules(matches));
  auto prog = rules::compile_ruleset(rs);
  REQUIRE(prog.ok());
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE(db.ok());
  const uint32_t count = rules::rule_ids(rs).count;
  dataplane::PublishedRules published(1, rs, std::move(*prog), std::move(*db), count, 1);
  dataplane::WorkerMatchState state(0, nullptr, 1);
  state.begin(&published, 0);
  rules::Interpreter interpreter(rs);

  for (const std::string body : {"none of them", "has needle49 late", "has needle7 only", "needle0"}) {
    const std::string data = at(28, body, 28 + std::string(body).size() + 5);
    rules::Packet p;
    p.proto = 17;
    p.payload = reinterpret_cast<const uint8_t*>(data.data());
    p.payload_len = uint16_t(data.size());
    state.begin_packet();
    rules::SimpleMatchState reference;
    const rules::HookResult want = interpreter.evaluate(rules::Hook::kForward, p, reference);
    const rules::HookResult got = published.program.evaluate(rules::Hook::kForward, p, state);
    CHECK(got == want);
  }
  // "none of them" reaches the last (inverted) rule and drops.
  REQUIRE(published.scanners.size() == 1);
  CHECK(published.scanners[0]->scans() == 4);
}

TEST_CASE("a later fragment is searched like any datagram: xt_string has no fragment test") {
  rules::Ruleset rs = parse(filter_rules({"--string secret --algo bm"}));
  auto prog = rules::compile_ruleset(rs);
  REQUIRE(prog.ok());
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE(db.ok());
  dataplane::PublishedRules published(1, rs, std::move(*prog), std::move(*db), rules::rule_ids(rs).count, 1);
  dataplane::WorkerMatchState state(0, nullptr, 1);
  state.begin(&published, 0);
  const std::string data = at(20, "secret", 64);
  rules::Packet p;
  p.proto = 6;
  p.fragment = true;
  p.payload = reinterpret_cast<const uint8_t*>(data.data());
  p.payload_len = uint16_t(data.size());
  state.begin_packet();
  CHECK(published.program.evaluate(rules::Hook::kForward, p, state).action == rules::Action::kDrop);
}

TEST_CASE("without begin_packet each hook scans afresh and a lone string match searches on its own") {
  rules::Ruleset rs = parse(filter_rules({"--string one --algo bm", "--string two --algo bm"}));
  auto prog = rules::compile_ruleset(rs);
  REQUIRE(prog.ok());
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE(db.ok());
  dataplane::PublishedRules published(1, rs, std::move(*prog), std::move(*db), rules::rule_ids(rs).count, 1);
  dataplane::WorkerMatchState state(0, nullptr, 1);
  state.begin(&published, 0);
  std::string data = at(20, "two", 64);
  rules::Packet p;
  p.payload = reinterpret_cast<const uint8_t*>(data.data());
  p.payload_len = uint16_t(data.size());
  CHECK(published.program.evaluate(rules::Hook::kForward, p, state).action == rules::Action::kDrop);
  CHECK(published.scanners[0]->scans() == 1);
  // The same buffer rewritten between hooks: the next hook sees the new bytes.
  data.replace(20, 3, "xyz");
  CHECK(published.program.evaluate(rules::Hook::kForward, p, state).action == rules::Action::kAccept);
  CHECK(published.scanners[0]->scans() == 2);
  const rules::Chain* forward = rs.tables[size_t(rules::TableId::kFilter)].find("FORWARD");
  const auto& one = std::get<StringMatch>(forward->rules[0].matches[0]);
  data.replace(20, 3, "one");
  CHECK(state.string(one, p));
  CHECK(published.scanners[0]->scans() == 2);
}

TEST_CASE("each worker claims its own scanner of a generation, once") {
  rules::Ruleset rs = parse(filter_rules({"--string one --algo bm"}));
  auto prog = rules::compile_ruleset(rs);
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE(db.ok());
  dataplane::PublishedRules published(4, rs, std::move(*prog), std::move(*db), rules::rule_ids(rs).count, 2);
  dataplane::WorkerMatchState a(0, nullptr, 1), b(0, nullptr, 2);
  a.begin(&published, 0);
  a.begin(&published, 1);
  b.begin(&published, 0);
  CHECK(published.scanners_claimed.load() == 2);
}
