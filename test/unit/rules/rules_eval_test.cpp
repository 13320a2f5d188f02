// Evaluation semantics a user notices (first match, jumps, policies, table
// order, nat on first packets only, kube-proxy's random split), checked on
// both the interpreter and the compiled Program.
#include <catch2/catch.hpp>

#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"

using namespace dpgate::rules;

namespace {

struct Both {
  Ruleset rs;
  Program prog;
  static Both make(const std::string& text) {
    auto rs = parse_ruleset(text, "t.rules");
    if (!rs.ok()) FAIL(rs.error().to_string());
    auto prog = compile_ruleset(*rs);
    if (!prog.ok()) FAIL(prog.error().to_string());
    return Both{*rs, *prog};
  }
  // Runs both evaluators; requires that they agree, returns the result.
  HookResult run(Hook h, const Packet& p, uint64_t seed = 7) {
    SimpleMatchState a(seed), b(seed);
    HookResult x = Interpreter(rs).evaluate(h, p, a);
    HookResult y = prog.evaluate(h, p, b);
    REQUIRE(x == y);
    return x;
  }
};

// The id of rule `k` (0-based) of chain `chain`.
uint32_t id_of(const Ruleset& rs, TableId t, std::string_view chain, uint32_t k) {
  const Table& tb = rs.table(t);
  const Chain* c = tb.find(chain);
  REQUIRE(c != nullptr);
  return rule_ids(rs).base[size_t(t)][size_t(c - tb.chains.data())] + k;
}

Packet tcp(uint32_t src, uint32_t dst, uint16_t dport) {
  Packet p;
  p.src = src;
  p.dst = dst;
  p.proto = 6;
  p.sport = 40000;
  p.dport = dport;
  p.tcp_flags = 0x02;
  p.set_in_iface("eth0");
  return p;
}

constexpr uint32_t kClient = 0xc6120005;  // 198.18.0.5
constexpr uint32_t kVip = 0xc613000a;     // 198.19.0.10

}  // namespace

TEST_CASE("the first matching rule decides and the policy catches the rest") {
  auto b = Both::make(
      "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"
      "-A INPUT -p tcp --dport 22 -j REJECT\nCOMMIT\n");
  CHECK(b.run(Hook::kInput, tcp(kClient, kVip, 22)).action == Action::kAccept);
  CHECK(b.run(Hook::kInput, tcp(kClient, kVip, 23)).action == Action::kDrop);
}

TEST_CASE("RETURN resumes after the jump, goto returns to the caller's caller") {
  auto b = Both::make(
      "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A INPUT -j DROP\n"
      "-A A -g B\n-A A -j ACCEPT\n-A B -j RETURN\nCOMMIT\n");
  // INPUT -> A -g B -> RETURN pops to INPUT's next rule (DROP), not A's ACCEPT.
  HookResult r = b.run(Hook::kInput, tcp(kClient, kVip, 80));
  CHECK(r.action == Action::kDrop);
  CHECK(r.matched_count == 4);
}

TEST_CASE("marks set in mangle are seen by filter in the same hook") {
  auto b = Both::make(
      "*mangle\n-A FORWARD -j MARK --or-mark 0x4000\nCOMMIT\n"
      "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\nCOMMIT\n");
  HookResult r = b.run(Hook::kForward, tcp(kClient, kVip, 80));
  CHECK(r.action == Action::kAccept);
  CHECK(r.mark == 0x4000);
}

TEST_CASE("the nat table sees only a connection's first packet") {
  auto b = Both::make("*nat\n-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:8080\nCOMMIT\n");
  Packet p = tcp(kClient, kVip, 80);
  HookResult first = b.run(Hook::kPrerouting, p);
  REQUIRE(first.has_dnat);
  CHECK(first.dnat.min_addr == 0x0a000001);
  CHECK(first.dnat.min_port == 8080);
  p.ct_state = ct_state::kEstablished;
  CHECK_FALSE(b.run(Hook::kPrerouting, p).has_dnat);
}

TEST_CASE("NOTRACK in raw keeps the packet out of nat") {
  auto b = Both::make(
      "*raw\n-A PREROUTING -p tcp --dport 53 -j CT --notrack\nCOMMIT\n"
      "*nat\n-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n");
  HookResult r = b.run(Hook::kPrerouting, tcp(kClient, kVip, 53));
  CHECK(r.notrack);
  CHECK_FALSE(r.has_dnat);
  CHECK(b.run(Hook::kPrerouting, tcp(kClient, kVip, 54)).has_dnat);
}

TEST_CASE("kube-proxy's chained probabilities split evenly over three endpoints") {
  auto b = Both::make(
      "*nat\n:SVC - [0:0]\n-A PREROUTING -d 198.19.0.10 -p tcp --dport 80 -j SVC\n"
      "-A SVC -m statistic --mode random --probability 0.33333333349 -p tcp -j DNAT --to-destination 10.0.0.1:80\n"
      "-A SVC -m statistic --mode random --probability 0.50000000000 -p tcp -j DNAT --to-destination 10.0.0.2:80\n"
      "-A SVC -p tcp -j DNAT --to-destination 10.0.0.3:80\nCOMMIT\n");
  int hits[3] = {0, 0, 0};
  SimpleMatchState a(99), c(99);
  Interpreter interp(b.rs);
  for (int k = 0; k < 30000; ++k) {
    Packet p = tcp(kClient, kVip, 80);
    HookResult x = interp.evaluate(Hook::kPrerouting, p, a);
    HookResult y = b.prog.evaluate(Hook::kPrerouting, p, c);
    REQUIRE(x == y);
    REQUIRE(x.has_dnat);
    hits[(x.dnat.min_addr & 0xff) - 1]++;
  }
  for (int h : hits) CHECK(std::abs(h - 10000) < 400);
}

TEST_CASE("statistic nth picks every n-th packet starting at --packet") {
  auto b = Both::make("*filter\n-A INPUT -m statistic --mode nth --every 3 --packet 1 -j DROP\nCOMMIT\n");
  SimpleMatchState st(1);
  std::string seen;
  for (int k = 0; k < 6; ++k) {
    seen += b.prog.evaluate(Hook::kInput, tcp(kClient, kVip, 80), st).action == Action::kDrop ? 'D' : '.';
  }
  CHECK(seen == ".D..D.");
}

TEST_CASE("recent --rcheck finds what --set recorded, until --seconds pass") {
  auto b = Both::make(
      "*filter\n-A INPUT -m recent --name A --rcheck --seconds 60 -j ACCEPT\n"
      "-A INPUT -m recent --name A --set -j DROP\nCOMMIT\n");
  SimpleMatchState st(1);
  Interpreter interp(b.rs);
  Packet p = tcp(kClient, kVip, 80);
  CHECK(interp.evaluate(Hook::kInput, p, st).action == Action::kDrop);
  st.set_now(30);
  CHECK(interp.evaluate(Hook::kInput, p, st).action == Action::kAccept);
  st.set_now(200);
  CHECK(interp.evaluate(Hook::kInput, p, st).action == Action::kDrop);
}

TEST_CASE("recent lists are kept apart by name, negation and --rdest included, in both evaluators") {
  auto b = Both::make(
      "*filter\n"
      "-A INPUT -m recent --name A --set -m recent --name D --rdest --set -j ACCEPT\n"
      "-A FORWARD -m recent --name B --rcheck -j REJECT\n"
      "-A FORWARD -m recent ! --rcheck --name A -j DROP\n"
      "-A FORWARD -m recent --name D --rdest --rcheck -j REJECT\n"
      "COMMIT\n");
  // The Program keeps recent matches inline with the list's number, not its
  // name; the interpreter numbers it per match.
  CHECK(recent_list_id("A") != recent_list_id("B"));
  CHECK(recent_list_id("KUBE-SEP-ABC") == recent_list_id(std::string("KUBE-SEP-") + "ABC"));
  CHECK(recent_list_id("KUBE-SEP-ABC") < (1u << 31));
  SimpleMatchState si(1), sp(1);
  Interpreter interp(b.rs);
  auto both = [&](Hook h, const Packet& p) {
    const HookResult x = interp.evaluate(h, p, si);
    const HookResult y = b.prog.evaluate(h, p, sp);
    REQUIRE(x == y);
    return x.action;
  };
  CHECK(both(Hook::kForward, tcp(kClient, kVip, 80)) == Action::kDrop);  // not in A yet
  CHECK(both(Hook::kInput, tcp(kClient, kVip, 80)) == Action::kAccept);  // A: kClient, D: kVip
  CHECK(both(Hook::kForward, tcp(kClient, kVip, 80)) == Action::kReject);  // in A; kVip in D; B empty
  CHECK(both(Hook::kForward, tcp(kClient, kVip + 1, 80)) == Action::kAccept);  // kVip + 1 not in D
  CHECK(both(Hook::kForward, tcp(kClient + 1, kVip, 80)) == Action::kDrop);  // not in A
}

TEST_CASE("a service dispatch chain compiles to one hash lookup") {
  std::string text = "*nat\n:SVC - [0:0]\n:KUBE-SERVICES - [0:0]\n-A SVC -j RETURN\n";
  for (int k = 0; k < 500; ++k) {
    text += "-A KUBE-SERVICES -d 10.96." + std::to_string(k / 200) + "." + std::to_string(k % 200) +
            " -p tcp -m tcp --dport 80 -m comment --comment svc -j SVC\n";
  }
  text += "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j SVC\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";
  auto b = Both::make(text);
  CHECK(b.prog.stats().hash_segments == 1);
  CHECK(b.prog.stats().hashed_rules == 500);
  CHECK(b.prog.stats().hash_max_probes <= 2);  // consecutive addresses, one slot apart
  HookResult r = b.run(Hook::kPrerouting, tcp(kClient, 0x0a600101, 80));  // 10.96.1.1
  REQUIRE(r.matched_count >= 2);
  CHECK(r.matched[0] == id_of(b.rs, TableId::kNat, "PREROUTING", 0));
  CHECK(r.matched[1] == id_of(b.rs, TableId::kNat, "KUBE-SERVICES", 201));  // 10.96.1.1
}

TEST_CASE("chains are laid out depth first from the built-in chains, as rule ids number them") {
  // As iptables-save lists kube-proxy's chains: by name, so a service's
  // KUBE-SVC chain and its KUBE-SEP chains lie far apart.
  const std::string text =
      "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-MARK-MASQ - [0:0]\n"
      ":KUBE-SEP-A1 - [0:0]\n:KUBE-SEP-A2 - [0:0]\n:KUBE-SEP-B1 - [0:0]\n:KUBE-SERVICES - [0:0]\n"
      ":KUBE-SVC-A - [0:0]\n:KUBE-SVC-B - [0:0]\n:UNUSED - [0:0]\n"
      "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n"
      "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
      "-A KUBE-SEP-A1 -s 10.0.0.1 -j KUBE-MARK-MASQ\n"
      "-A KUBE-SEP-A1 -p tcp -j DNAT --to-destination 10.0.0.1:80\n"
      "-A KUBE-SEP-A2 -s 10.0.0.2 -j KUBE-MARK-MASQ\n"
      "-A KUBE-SEP-A2 -p tcp -j DNAT --to-destination 10.0.0.2:80\n"
      "-A KUBE-SEP-B1 -p tcp -j DNAT --to-destination 10.0.0.3:80\n"
      "-A KUBE-SERVICES -d 10.96.0.1 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n"
      "-A KUBE-SERVICES -d 10.96.0.2 -p tcp -m tcp --dport 80 -j KUBE-SVC-B\n"
      "-A KUBE-SVC-A -m statistic --mode random --probability 0.5 -j KUBE-SEP-A1\n"
      "-A KUBE-SVC-A -j KUBE-SEP-A2\n-A KUBE-SVC-B -j KUBE-SEP-B1\n-A UNUSED -j RETURN\nCOMMIT\n";
  auto b = Both::make(text);
  const Table& nat = b.rs.table(TableId::kNat);
  std::vector<std::string> names;
  for (const uint32_t c : chain_layout(nat)) names.push_back(nat.chains[c].name);
  CHECK(names == std::vector<std::string>{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KUBE-SERVICES",
                                          "KUBE-SVC-A", "KUBE-SEP-A1", "KUBE-MARK-MASQ", "KUBE-SEP-A2",
                                          "KUBE-SVC-B", "KUBE-SEP-B1", "UNUSED"});
  // Rule ids, and so the Program's rules and the counters, follow the layout.
  CHECK(id_of(b.rs, TableId::kNat, "KUBE-SERVICES", 0) == 2);
  CHECK(id_of(b.rs, TableId::kNat, "KUBE-SVC-A", 0) == 4);
  CHECK(id_of(b.rs, TableId::kNat, "KUBE-SEP-A1", 0) == 6);
  CHECK(id_of(b.rs, TableId::kNat, "KUBE-MARK-MASQ", 0) == 8);
  CHECK(id_of(b.rs, TableId::kNat, "UNUSED", 0) == 13);
  CHECK(rule_ids(b.rs).count == 14);
  // Both evaluators name the same rules: service A's walk, one id after
  // another but for the jump back out of KUBE-MARK-MASQ.
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    const HookResult r = b.run(Hook::kPrerouting, tcp(kClient, 0x0a600001, 80), seed);  // 10.96.0.1
    REQUIRE(r.action == Action::kAccept);
    REQUIRE(r.matched_count >= 4);
    CHECK(r.matched[0] == 0);
    CHECK(r.matched[1] == 2);
    CHECK((r.matched[2] == 4 || r.matched[2] == 5));
  }
}

TEST_CASE("a table's chains are found by name among tens of thousands, and a missing name is not") {
  Table tb;
  tb.present = true;
  for (uint32_t c = 0; c < 50000; ++c) tb.chains.emplace_back().name = "KUBE-SEP-" + std::to_string(c * 7919);
  const ChainIndex index(tb);
  REQUIRE(index.size() == 50000);
  for (uint32_t c = 0; c < 50000; ++c) REQUIRE(index.find(tb.chains[c].name) == c);
  CHECK(index.find("KUBE-SEP-1") == index.size());
  CHECK(index.find("") == index.size());
  CHECK(index.find("KUBE-SEP-0 ") == index.size());
  const Table empty;
  CHECK(ChainIndex(empty).find("INPUT") == 0);
}

TEST_CASE("a compiled ruleset whose jump names no chain is an error at that rule, not a crash") {
  // The parser refuses such a file at COMMIT; a Ruleset built in code
  // reaches the compiler's own check.
  auto rs = parse_ruleset("*filter\n:USER - [0:0]\n-A FORWARD -j USER\n-A USER -j ACCEPT\nCOMMIT\n", "t.rules");
  REQUIRE(rs.ok());
  Ruleset broken = *rs;
  Table& filter = broken.table(TableId::kFilter);
  filter.chains.erase(filter.chains.begin() + std::ptrdiff_t(ChainIndex(filter).find("USER")));
  auto prog = compile_ruleset(broken);
  REQUIRE_FALSE(prog.ok());
  CHECK(prog.error().to_string() == "t.rules:3:1: expected a declared chain but found jump to 'USER'");
}

namespace {

// SimpleMatchState that counts how the evaluator asks about payloads and nth
// counters.
class CountingState final : public MatchState {
 public:
  uint32_t random31() override { return inner_.random31(); }
  bool nth(uint32_t rule_id, uint32_t match_index, const StatisticMatch& m) override {
    ++nth_calls;
    return inner_.nth(rule_id, match_index, m);
  }
  bool recent(const RecentCheck& m, const Packet& p) override { return inner_.recent(m, p); }
  bool limit(uint32_t rule_id, uint32_t match_index, const LimitMatch& m) override {
    return inner_.limit(rule_id, match_index, m);
  }
  void nfacct(const NfacctMatch& m, const Packet& p) override { inner_.nfacct(m, p); }
  bool string(const StringMatch& m, const Packet& p) override {
    ++string_calls;
    return inner_.string(m, p);
  }
  const uint64_t* string_scan(const StringPatterns& patterns, const Packet& p) override {
    ++scans;
    return inner_.string_scan(patterns, p);
  }
  uint32_t nth_calls = 0, string_calls = 0, scans = 0;

 private:
  SimpleMatchState inner_;
};

Packet with_payload(const std::string& payload) {
  Packet p = tcp(0x0a000001, 0x0a000002, 80);
  p.payload = reinterpret_cast<const uint8_t*>(payload.data());
  p.payload_len = uint16_t(payload.size());
  return p;
}

std::string string_rules(size_t n, const std::string& before, const std::string& after) {
  std::string text = "*filter\n:FORWARD ACCEPT [0:0]\n";
  for (size_t i = 0; i < n; ++i) {
    text += "-A FORWARD -p tcp" + before + " -m string --string needle" + std::to_string(i) + "x --algo bm" +
            after + " -j DROP\n";
  }
  return text + "COMMIT\n";
}

}  // namespace

TEST_CASE("one scan rules out every string rule whose pattern the packet lacks") {
  Both b = Both::make(string_rules(1000, "", ""));
  CHECK(b.prog.stats().string_guarded_rules == 1000);
  CountingState state;
  const std::string none = "GET / HTTP/1.1\r\nHost: example\r\n";
  CHECK(b.prog.evaluate(Hook::kForward, with_payload(none), state).action == Action::kAccept);
  CHECK(state.scans == 1);
  CHECK(state.string_calls == 0);
  const std::string late = "GET /needle999x HTTP/1.1";
  const HookResult r = b.run(Hook::kForward, with_payload(late));
  CHECK(r.action == Action::kDrop);
  REQUIRE(r.matched_count == 1);
  CHECK(r.matched[0] == 999);
}

TEST_CASE("a segment of string rules only ends at a scan that found none of its patterns") {
  // 2000 rules: two classifier segments (1024 rules at most each), every
  // rule guarded, so each segment is one the scan can rule out whole.
  Both b = Both::make(string_rules(2000, "", ""));
  CHECK(b.prog.stats().classifier_segments == 2);
  CHECK(b.prog.stats().string_guarded_segments == 2);
  CountingState state;
  CHECK(b.prog.evaluate(Hook::kForward, with_payload("GET / HTTP/1.1"), state).action == Action::kAccept);
  CHECK(state.scans == 1);
  CHECK(state.string_calls == 0);
  // A pattern of the second segment found: the first still ends, the second
  // walks to its rule; and the other way round.
  for (uint32_t rule : {0u, 5u, 1023u, 1024u, 1500u, 1999u}) {
    const std::string payload = "GET /needle" + std::to_string(rule) + "x HTTP/1.1";
    const HookResult r = b.run(Hook::kForward, with_payload(payload));
    CHECK(r.action == Action::kDrop);
    REQUIRE(r.matched_count == 1);
    CHECK(r.matched[0] == rule);
  }
  // Not for a packet the segment's fields rule out: no scan at all.
  CountingState other;
  Packet udp = with_payload("GET /needle5x");
  udp.proto = 17;
  CHECK(b.prog.evaluate(Hook::kForward, udp, other).action == Action::kAccept);
  CHECK(other.scans == 0);
}

TEST_CASE("a segment with one rule that needs no pattern is walked when the scan finds nothing") {
  std::string text = "*filter\n:FORWARD ACCEPT [0:0]\n";
  for (int i = 0; i < 40; ++i) {
    if (i == 30) text += "-A FORWARD -p tcp --dport 80 -j REJECT\n";
    // MARK does not end the walk: a later match resumes inside the segment.
    text += "-A FORWARD -p tcp -m string --string needle" + std::to_string(i) + "x --algo bm -j MARK --or-mark 0x" +
            std::to_string(i % 8 + 1) + "\n";
  }
  text += "COMMIT\n";
  Both b = Both::make(text);
  CHECK(b.prog.stats().classifier_segments == 1);
  CHECK(b.prog.stats().string_guarded_segments == 0);
  CHECK(b.prog.stats().string_guarded_rules == 40);
  CHECK(b.run(Hook::kForward, with_payload("nothing")).action == Action::kReject);
  const HookResult r = b.run(Hook::kForward, with_payload("needle3x needle7x needle35x"));
  CHECK(r.action == Action::kReject);
  CHECK(r.matched_count == 3);  // needle3x, needle7x, then the REJECT
}

TEST_CASE("a guarded segment entered in its middle ends when the rest of its patterns are missing") {
  std::string text = "*filter\n:FORWARD ACCEPT [0:0]\n";
  for (int i = 0; i < 100; ++i) {
    text += "-A FORWARD -p tcp -m string --string needle" + std::to_string(i) + "x --algo bm -j MARK --set-mark " +
            std::to_string(i + 1) + "\n";
  }
  text += "COMMIT\n";
  Both b = Both::make(text);
  CHECK(b.prog.stats().string_guarded_segments == 1);
  for (const char* payload : {"needle0x", "needle70x", "needle3x needle99x", "needle64x needle63x", "none"}) {
    const HookResult r = b.run(Hook::kForward, with_payload(payload));
    CHECK(r.action == Action::kAccept);
  }
  CHECK(b.run(Hook::kForward, with_payload("needle3x needle99x")).mark == 100);
}

TEST_CASE("a statistic match before the string match still counts packets that lack the pattern") {
  // As ipt_do_table: the nth counter advances before the string match fails.
  Both before = Both::make(string_rules(100, " -m statistic --mode nth --every 2 --packet 0", ""));
  CHECK(before.prog.stats().string_guarded_rules == 0);
  CountingState a;
  before.prog.evaluate(Hook::kForward, with_payload("nothing here"), a);
  CHECK(a.nth_calls == 100);
  // After the string match it is never reached, so those rules can be skipped.
  Both after = Both::make(string_rules(100, "", " -m statistic --mode nth --every 2 --packet 0"));
  CHECK(after.prog.stats().string_guarded_rules == 100);
  CountingState b;
  after.prog.evaluate(Hook::kForward, with_payload("nothing here"), b);
  CHECK(b.nth_calls == 0);
  CHECK(b.scans == 1);
}

TEST_CASE("a negated string match keeps its rule a candidate") {
  Both b = Both::make(
      "*filter\n:FORWARD ACCEPT [0:0]\n"
      "-A FORWARD -p tcp -m string --algo bm ! --string needle -j DROP\n"
      "-A FORWARD -p tcp -m string --algo bm --string other -j ACCEPT\n"
      "COMMIT\n");
  CHECK(b.run(Hook::kForward, with_payload("plain")).action == Action::kDrop);
  CHECK(b.run(Hook::kForward, with_payload("a needle")).action == Action::kAccept);
}

TEST_CASE("hook_has_work says which hooks a packet can skip: empty ACCEPT chains, nat only for new connections") {
  auto program = [](const char* text) {
    auto rs = parse_ruleset(text, "t.rules");
    REQUIRE(rs);
    auto prog = compile_ruleset(*rs);
    REQUIRE(prog);
    return std::move(*prog);
  };
  const Program kube = program(
      "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
      "-A PREROUTING -d 198.19.0.1/32 -p tcp -j DNAT --to-destination 198.18.2.2\n"
      "-A POSTROUTING -j MASQUERADE\nCOMMIT\n"
      "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
      "-A FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n");
  CHECK(kube.hook_has_work(Hook::kPrerouting, true));
  CHECK_FALSE(kube.hook_has_work(Hook::kPrerouting, false));
  CHECK(kube.hook_has_work(Hook::kPostrouting, true));
  CHECK_FALSE(kube.hook_has_work(Hook::kPostrouting, false));
  CHECK(kube.hook_has_work(Hook::kForward, false));
  CHECK_FALSE(kube.hook_has_work(Hook::kInput, true));
  CHECK_FALSE(kube.hook_has_work(Hook::kOutput, true));
  // An empty chain still decides when its policy is DROP.
  const Program closed = program("*mangle\n:PREROUTING DROP [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");
  CHECK(closed.hook_has_work(Hook::kPrerouting, false));
  CHECK_FALSE(closed.hook_has_work(Hook::kPostrouting, true));
}

TEST_CASE("a later packet of an unanswered connection is NEW but skips nat: its binding was chosen by the first") {
  auto b = Both::make(
      "*nat\n:PREROUTING ACCEPT [0:0]\n"
      "-A PREROUTING -d 198.19.0.10/32 -p tcp -j DNAT --to-destination 198.18.2.2\nCOMMIT\n"
      "*filter\n:FORWARD ACCEPT [0:0]\n"
      "-A FORWARD -m conntrack --ctstate NEW -j MARK --set-mark 0x7\nCOMMIT\n");
  Packet first = tcp(kClient, kVip, 80);
  CHECK(b.run(Hook::kPrerouting, first).has_dnat);
  Packet retransmit = first;
  retransmit.ct_confirmed = true;  // the SYN again, no reply seen yet: still NEW
  const HookResult pre = b.run(Hook::kPrerouting, retransmit);
  CHECK_FALSE(pre.has_dnat);
  CHECK(pre.matched_count == 0);
  // The filter table still sees it, as NEW.
  CHECK(b.run(Hook::kForward, retransmit).mark == 0x7);
}

TEST_CASE("fields_read names the costly packet fields some rule reads, so a data plane can skip the rest") {
  auto fields = [](const std::string& rules) {
    auto rs = parse_ruleset("*filter\n:FORWARD ACCEPT [0:0]\n" + rules + "COMMIT\n", "t.rules");
    REQUIRE(rs);
    return rs->fields_read();
  };
  CHECK(fields("-A FORWARD -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT\n") == 0);
  CHECK(fields("-A FORWARD -m addrtype --dst-type LOCAL -j ACCEPT\n") == packet_field::kAddrType);
  CHECK(fields("-A FORWARD -m conntrack --ctorigdst 198.19.0.10 -j ACCEPT\n") == packet_field::kCtTuples);
  CHECK(fields("-A FORWARD -m conntrack --ctproto tcp -j ACCEPT\n") == packet_field::kCtTuples);
  CHECK(fields("-A FORWARD -m conntrack --ctreplsrcport 80 -j ACCEPT\n") == packet_field::kCtTuples);
  CHECK(fields("-A FORWARD -p tcp -m tcp --tcp-option 2 -j DROP\n") == packet_field::kTcpOptions);
  CHECK(fields("-A FORWARD -m conntrack --ctstate ESTABLISHED --ctexpire 10:100 -j DROP\n") == packet_field::kCtExpire);
  CHECK(fields("-A FORWARD -m addrtype --src-type LOCAL -j ACCEPT\n-A FORWARD -p tcp --tcp-option 8 -j ACCEPT\n") ==
        (packet_field::kAddrType | packet_field::kTcpOptions));
}

TEST_CASE("a stateful firewall's state rules are tried before its classifier, as first rules") {
  // The shape of perf/gen-rules.py --filter: two state rules any packet's
  // header fields select, then rules the classifier can sort by header.
  std::string text =
      "*filter\n:FORWARD DROP [0:0]\n"
      "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
      "-A FORWARD -m state --state INVALID -j DROP\n";
  for (int i = 0; i < 20; ++i) {
    text += "-A FORWARD -s 198.19." + std::to_string(i) + ".0/24 -p tcp -m tcp --dport " + std::to_string(6000 + i) +
            " -j ACCEPT\n";
  }
  text += "-A FORWARD -s 198.18.0.0/24 -p tcp -m tcp --dport 5001:5016 -m conntrack --ctstate NEW -j ACCEPT\n";
  text += "-A FORWARD -m conntrack ! --ctstate NEW -j REJECT\nCOMMIT\n";
  auto b = Both::make(text);
  CHECK(b.prog.stats().linear_rules == 2);
  CHECK(b.prog.stats().classifier_segments == 1);
  CHECK(b.prog.stats().classified_rules == 22);

  Packet p = tcp(kClient, 0xc6120102, 5003);  // 198.18.0.5 -> 198.18.1.2:5003
  const struct {
    uint16_t state;
    Action action;
    uint32_t rule;
  } cases[] = {
      {ct_state::kEstablished, Action::kAccept, 0},
      {ct_state::kRelated | ct_state::kDnat, Action::kAccept, 0},
      {ct_state::kInvalid, Action::kDrop, 1},
      {ct_state::kNew, Action::kAccept, 22},
      {ct_state::kUntracked, Action::kReject, 23},
  };
  for (const auto& c : cases) {
    INFO("ct_state " << c.state);
    p.ct_state = c.state;
    const HookResult r = b.run(Hook::kForward, p);
    CHECK(r.action == c.action);
    REQUIRE(r.matched_count == 1);
    CHECK(r.matched[0] == c.rule);
  }
}

TEST_CASE("a packet matching more rules than a result lists has the rest passed on to be counted, in order") {
  // 40 counting rules, a service dispatch run (one hash lookup) and the
  // chain it jumps to: 43 rules match, kMaxMatched of them are listed.
  std::string text = "*filter\n:SVC - [0:0]\n";
  for (int k = 0; k < 40; ++k) text += "-A FORWARD -p tcp -m comment --comment c" + std::to_string(k) + "\n";
  for (int k = 5; k < 15; ++k) {
    text += "-A FORWARD -d 198.19.0." + std::to_string(k) + "/32 -p tcp -m tcp --dport 80 -j SVC\n";
  }
  text += "-A SVC -p tcp\n-A SVC -j ACCEPT\nCOMMIT\n";
  auto b = Both::make(text);
  REQUIRE(b.prog.stats().hash_segments == 1);
  const Packet p = tcp(kClient, kVip, 80);
  SimpleMatchState a(7), c(7);
  const HookResult x = Interpreter(b.rs).evaluate(Hook::kForward, p, a);
  const HookResult y = b.prog.evaluate(Hook::kForward, p, c);
  REQUIRE(x == y);
  CHECK(x.action == Action::kAccept);
  REQUIRE(x.matched_count == kMaxMatched);
  CHECK(x.matched_overflow);
  CHECK(a.unrecorded() == c.unrecorded());
  REQUIRE(a.unrecorded().size() == 43 - kMaxMatched);
  // Every matched rule once, in the order it matched: the 40 counting rules
  // one after another, the hash run's jump for 198.19.0.10, SVC's two.
  std::vector<uint32_t> all(x.matched.begin(), x.matched.begin() + x.matched_count);
  all.insert(all.end(), a.unrecorded().begin(), a.unrecorded().end());
  for (uint32_t k = 0; k < 40; ++k) CHECK(all[k] == all[0] + k);
  CHECK(all[40] == all[0] + 40 + 5);  // the sixth rule of the run
  CHECK(all[41] == all[0] + 50);      // SVC's first rule, after FORWARD's 50
  CHECK(all[42] == all[0] + 51);
}

TEST_CASE("a hashed run spreads keys that differ only in the address's first octet") {
  // 200 services on 1.0.0.1, 2.0.0.1, ... 200.0.0.1, one port: were the
  // slot taken from the key's low bits alone, every key would share a slot
  // and a lookup would read up to 200 of them.
  std::string text = "*nat\n:SVC - [0:0]\n-A SVC -j RETURN\n";
  for (int k = 1; k <= 200; ++k) {
    text += "-A PREROUTING -d " + std::to_string(k) + ".0.0.1/32 -p tcp -m tcp --dport 443 -j SVC\n";
  }
  text += "COMMIT\n";
  auto b = Both::make(text);
  REQUIRE(b.prog.stats().hash_segments == 1);
  CHECK(b.prog.stats().hash_max_probes <= 8);
  // Each is still found: the packet to 117.0.0.1 jumps to SVC from
  // PREROUTING's rule #117 (id 116), and returns from SVC's (id 200).
  HookResult r = b.run(Hook::kPrerouting, tcp(kClient, 0x75000001, 443));
  REQUIRE(r.matched_count == 2);
  CHECK(r.matched[0] == 116);
  CHECK(r.matched[1] == 200);
}

TEST_CASE("an option-less -m tcp is the header's '! -f': a later fragment misses, side effects before it still run") {
  // kube-proxy's KUBE-SEP DNAT rule: the match is folded into the header.
  auto sep = Both::make(
      "*nat\n:SEP - [0:0]\n-A PREROUTING -j SEP\n"
      "-A SEP -p tcp -m comment --comment \"ns/svc:tcp\" -m tcp -j DNAT --to-destination 198.18.1.1:8080\n"
      "COMMIT\n");
  CHECK(sep.prog.stats().header_only_matches == 1);
  Packet p = tcp(kClient, kVip, 80);
  p.ct_state = ct_state::kNew;
  CHECK(sep.run(Hook::kPrerouting, p).has_dnat);
  p.fragment = true;
  CHECK_FALSE(sep.run(Hook::kPrerouting, p).has_dnat);

  // With a port, after a statistic match, or under -f it stays a match.
  auto kept = Both::make(
      "*filter\n:FORWARD DROP [0:0]\n"
      "-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\n"
      "-A FORWARD -p tcp -m statistic --mode nth --every 2 --packet 0 -m tcp -j ACCEPT\n"
      "-A FORWARD -p tcp -f -m tcp -j ACCEPT\n"
      "-A FORWARD -p udp ! -f -m udp -j ACCEPT\n"
      "COMMIT\n");
  CHECK(kept.prog.stats().header_only_matches == 1);  // the last rule's only
  // The nth counter counts the fragment before -m tcp fails it, on both
  // sides: after a fragment, the next packet gets the other verdict than
  // it gets first.
  Packet q = tcp(kClient, kVip, 81);
  Packet fragment = q;
  fragment.fragment = true;
  const Interpreter interp(kept.rs);
  SimpleMatchState ia(1), pa(1), ib(1), pb(1);
  REQUIRE(interp.evaluate(Hook::kForward, fragment, ia) == kept.prog.evaluate(Hook::kForward, fragment, pa));
  const HookResult after = interp.evaluate(Hook::kForward, q, ia);
  CHECK(kept.prog.evaluate(Hook::kForward, q, pa) == after);
  const HookResult first = interp.evaluate(Hook::kForward, q, ib);
  CHECK(kept.prog.evaluate(Hook::kForward, q, pb) == first);
  CHECK(after.action != first.action);
}
