// The Hyperscan path agrees with the plain searches on random payloads and
// patterns (fixed seeds): with match::find_text (the kernel's semantics) on
// everything, and with rules::SimpleMatchState, the rules module's reference,
// where the two references mean the same (ASCII case folding, --to beyond
// the datagram). And the data plane's whole path — the Program walking only
// the rules whose pattern one Hyperscan scan found — agrees with the
// interpreter searching rule by rule with find_text.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "dpgate/dataplane/match_state.hpp"
#include "dpgate/dataplane/published_rules.hpp"
#include "dpgate/lb/recent.hpp"
#include "dpgate/match/payload.hpp"
#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/packet.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"
#include "string_rules.hpp"

using namespace dpgate;

namespace {

// Small alphabets make matches frequent; the wide one reaches Latin-1 case
// pairs and bytes Hyperscan treats specially.
const std::string kAscii = std::string("aAbB.\\(\0", 8);
const std::string kWide = std::string("aAbB\xe0\xc0\xdf\xbf\xff\x00", 10);

std::string random_bytes(std::mt19937_64& rng, const std::string& alphabet, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = alphabet[rng() % alphabet.size()];
  return s;
}

rules::StringMatch random_match(std::mt19937_64& rng, const std::string& alphabet, bool windowed) {
  rules::StringMatch m;
  m.pattern = random_bytes(rng, alphabet, 1 + rng() % 4);
  m.algo = rng() % 2 ? "bm" : "kmp";
  m.icase = rng() % 2;
  if (windowed) {
    m.from = uint16_t(rng() % 40);
    m.to = uint16_t(m.from + rng() % 48);
  }
  return m;
}

struct Round {
  uint64_t agreed = 0, hits = 0;
};

// Builds one database of `n` random matches, scans `packets` random payloads
// and compares every match's answer with `reference`.
template <class Reference>
Round run(uint64_t seed, const std::string& alphabet, bool windowed, int n, int packets, Reference&& reference) {
  std::mt19937_64 rng(seed);
  rules::Ruleset rs;
  auto& table = rs.tables[size_t(rules::TableId::kFilter)];
  table.present = true;
  table.chains.push_back(rules::Chain{"FORWARD", rules::Hook::kForward, rules::Policy::kAccept, {}, {}, {}});
  std::vector<rules::StringMatch> strings;
  for (int i = 0; i < n; ++i) {
    strings.push_back(random_match(rng, alphabet, windowed));
    rules::Rule r;
    r.matches.push_back(strings.back());
    table.chains[0].rules.push_back(r);
  }
  auto db = match::PayloadDatabase::build(rs);
  REQUIRE(db.ok());
  match::PayloadScanner scanner(*db);
  Round round;
  for (int k = 0; k < packets; ++k) {
    const std::string data = random_bytes(rng, alphabet, rng() % 80);
    const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
    scanner.begin_packet();
    for (const auto& m : strings) {
      const bool fast = scanner.matches(m, bytes, data.size());
      const bool want = reference(m, bytes, data.size());
      if (fast != want) {
        FAIL_CHECK("pattern '" << m.pattern << "' from " << m.from << " to " << m.to << " icase " << m.icase
                               << " on '" << data << "': database " << fast << ", reference " << want);
      } else {
        ++round.agreed;
        round.hits += fast;
      }
    }
  }
  return round;
}

}  // namespace

TEST_CASE("the database agrees with the kernel's search on random payloads, windows and case") {
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (const std::string* alphabet : {&kAscii, &kWide}) {
      const Round r = run(seed, *alphabet, true, 120, 200, match::find_text);
      CHECK(r.agreed == 120u * 200u);
      CHECK(r.hits > 1000);  // the test would mean little without matches
    }
  }
}

TEST_CASE("a few windowed patterns: the scan window starts after the datagram's first byte") {
  // With 1 to 3 patterns the least --from is rarely 0 and the greatest --to
  // often below the datagram's end, so the scanned window is a strict part
  // of the datagram.
  uint64_t agreed = 0, hits = 0;
  for (uint64_t seed = 100; seed < 160; ++seed) {
    for (const std::string* alphabet : {&kAscii, &kWide}) {
      const int n = 1 + int(seed % 3);
      const Round r = run(seed, *alphabet, true, n, 100, match::find_text);
      CHECK(r.agreed == uint64_t(n) * 100u);
      agreed += r.agreed;
      hits += r.hits;
    }
  }
  CHECK(hits > agreed / 20);
}

TEST_CASE("the database agrees with rules::SimpleMatchState where both mean the same") {
  auto simple = [](const rules::StringMatch& m, const uint8_t* data, size_t len) {
    rules::SimpleMatchState state;
    rules::Packet p;
    p.payload = data;
    p.payload_len = uint16_t(len);
    return state.string(m, p);
  };
  for (uint64_t seed : {11u, 12u}) {
    const Round r = run(seed, kAscii, false, 200, 200, simple);
    CHECK(r.agreed == 200u * 200u);
    CHECK(r.hits > 1000);
  }
}

namespace {

// One side of the comparison: a generation of rules and one worker's state.
struct Side {
  std::unique_ptr<dataplane::PublishedRules> rules;
  lb::RecentTable recent{1024};
  dataplane::WorkerMatchState state;

  Side(const rules::Ruleset& rs, const rules::CompileOptions& opt, uint64_t seed) : state(0, &recent, seed) {
    auto prog = rules::compile_ruleset(rs, opt);
    auto db = match::PayloadDatabase::build(rs);
    REQUIRE(prog.ok());
    REQUIRE(db.ok());
    rules = std::make_unique<dataplane::PublishedRules>(1, rs, std::move(*prog), std::move(*db),
                                                        rules::rule_ids(rs).count, 1);
  }
};

}  // namespace

TEST_CASE("the Program over one Hyperscan scan agrees with the interpreter searching rule by rule") {
  uint64_t packets = 0, scans = 0, guarded = 0, guarded_segments = 0;
  for (int round = 0; round < 60; ++round) {
    const uint64_t seed = 7700 + uint64_t(round);
    testing::StringRulesGen g(seed);
    const std::string text = g.ruleset(round % 4 == 0 ? 400 : 40, round % 4 == 1);
    auto rs = rules::parse_ruleset(text, "strings.rules");
    INFO("round " << round << "\n" << text);
    if (!rs.ok()) FAIL(rs.error().to_string());
    rules::CompileOptions opt;
    if (round % 3 != 0) opt.min_classifier_run = 1 + g.below(8);
    Side reference(*rs, opt, seed), fast(*rs, opt, seed);
    const auto& program = fast.rules->program;
    REQUIRE(program.string_patterns().fingerprint == fast.rules->payload.fingerprint());
    guarded += program.stats().string_guarded_rules;
    guarded_segments += program.stats().string_guarded_segments;
    rules::Interpreter interp(*rs);
    // Odd rounds leave begin_packet out: the Program then scans once per hook.
    const bool packet_scoped = round % 2 == 0;
    for (int k = 0; k < 80; ++k) {
      const std::string payload = g.payload(64);
      const rules::Packet p = g.packet(payload);
      const rules::Hook hook = g.hook();
      const uint64_t now_ns = uint64_t(k) * 50'000'000;
      reference.state.begin(reference.rules.get(), now_ns);
      fast.state.begin(fast.rules.get(), now_ns);
      if (packet_scoped) fast.state.begin_packet();
      const rules::HookResult want = interp.evaluate(hook, p, reference.state);
      const rules::HookResult got = program.evaluate(hook, p, fast.state);
      INFO("packet " << k << " hook " << rules::hook_name(hook) << " payload '" << payload << "'");
      REQUIRE(int(got.action) == int(want.action));
      REQUIRE(got == want);
      ++packets;
    }
    REQUIRE(fast.state.random31() == reference.state.random31());
    CHECK(reference.rules->scanners[0]->scans() == 0);  // the reference never used the database
    scans += fast.rules->scanners[0]->scans();
  }
  WARN("Hyperscan pruning property: " << packets << " packets, " << scans << " scans, " << guarded
                                      << " string-guarded rules, " << guarded_segments
                                      << " segments of such rules only");
  CHECK(guarded > 1000);
  CHECK(guarded_segments > 20);
  CHECK(scans > packets / 2);
}
