// The Hyperscan path agrees with the plain searches on random payloads and
// patterns (fixed seeds): with match::find_text (the kernel's semantics) on
// everything, and with rules::SimpleMatchState, the rules module's reference,
// where the two references mean the same (ASCII case folding, --to beyond
// the datagram).
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "dpgate/match/payload.hpp"
#include "dpgate/rules/packet.hpp"

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
