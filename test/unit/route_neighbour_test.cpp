// The neighbour table: learning, static entries, ageing, and lock-free reads
// while the control thread writes.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "dpgate/route/neighbour.hpp"

using namespace dpgate::route;
using dpgate::net::MacAddr;

namespace {
MacAddr mac(uint8_t last) { return MacAddr{{0x02, 0, 0, 0, 0, last}}; }
}  // namespace

TEST_CASE("a learned neighbour is found on its port only") {
  NeighbourTable t(64);
  REQUIRE(t.learn(1, 0xc6120202, mac(2), 100));
  auto n = t.lookup(1, 0xc6120202);
  REQUIRE(n);
  CHECK(n->mac == mac(2));
  CHECK(n->state == NeighbourState::kReachable);
  CHECK_FALSE(t.lookup(0, 0xc6120202));
  CHECK_FALSE(t.lookup(1, 0xc6120203));
}

TEST_CASE("learning never overrides a static entry") {
  NeighbourTable t(64);
  REQUIRE(t.set(0, 10, mac(1), NeighbourState::kStatic, 0));
  REQUIRE(t.learn(0, 10, mac(9), 5));
  CHECK(t.lookup(0, 10)->mac == mac(1));
}

TEST_CASE("entries go stale, then away; static ones stay") {
  NeighbourTable t(64);
  t.learn(0, 1, mac(1), 0);
  t.set(0, 2, mac(2), NeighbourState::kStatic, 0);
  t.age(150, 100, 50);
  CHECK(t.lookup(0, 1)->state == NeighbourState::kStale);
  t.learn(0, 1, mac(1), 160);  // confirmed again
  CHECK(t.lookup(0, 1)->state == NeighbourState::kReachable);
  t.age(300, 100, 50);
  CHECK(t.lookup(0, 1)->state == NeighbourState::kStale);
  t.age(400, 100, 50);
  CHECK_FALSE(t.lookup(0, 1));
  CHECK(t.lookup(0, 2)->state == NeighbourState::kStatic);
  CHECK(t.size() == 1);
}

TEST_CASE("deleted slots keep later entries of the same probe chain reachable") {
  NeighbourTable t(16);
  for (uint32_t ip = 1; ip <= 12; ++ip) REQUIRE(t.learn(0, ip, mac(static_cast<uint8_t>(ip)), 0));
  for (uint32_t ip = 1; ip <= 12; ip += 2) REQUIRE(t.erase(0, ip));
  for (uint32_t ip = 2; ip <= 12; ip += 2) {
    INFO(ip);
    REQUIRE(t.lookup(0, ip));
    CHECK(t.lookup(0, ip)->mac == mac(static_cast<uint8_t>(ip)));
  }
  CHECK(t.size() == 6);
  CHECK(t.rows().size() == 6);
}

TEST_CASE("a full table refuses new entries instead of evicting") {
  NeighbourTable t(16);
  uint32_t ip = 1;
  while (t.learn(0, ip, mac(1), 0)) ++ip;
  CHECK(t.size() == 16);
  CHECK(t.lookup(0, 1));
}

TEST_CASE("a reader racing the writer never sees a torn entry") {
  NeighbourTable t(64);
  t.learn(0, 7, MacAddr{}, 0);  // all bytes equal, like every MAC written below
  std::atomic<bool> done{false};
  std::atomic<uint64_t> torn{0};
  std::thread reader([&] {
    while (!done.load()) {
      auto n = t.lookup(0, 7);
      // The writer only ever writes MACs whose bytes are all equal.
      if (n && (n->mac.bytes[1] != n->mac.bytes[5] || n->mac.bytes[0] != n->mac.bytes[5])) torn.fetch_add(1);
    }
  });
  for (int i = 0; i < 200000; ++i) {
    const uint8_t b = static_cast<uint8_t>(i * 2);  // even: unicast
    t.learn(0, 7, MacAddr{{b, b, b, b, b, b}}, static_cast<uint64_t>(i));
  }
  done = true;
  reader.join();
  CHECK(torn.load() == 0);
}

TEST_CASE("the generation moves with every write and only then") {
  NeighbourTable t(64);
  uint64_t g = t.generation();
  auto moved = [&] {
    const uint64_t now = t.generation();
    const bool changed = now != g;
    g = now;
    return changed;
  };
  REQUIRE(t.learn(1, 10, mac(1), 0));
  CHECK(moved());
  REQUIRE(t.lookup(1, 10));
  CHECK_FALSE(t.lookup(1, 11));
  CHECK_FALSE(moved());
  REQUIRE(t.set(1, 12, mac(2), NeighbourState::kStatic, 0));
  CHECK(moved());
  REQUIRE(t.learn(1, 12, mac(3), 5));  // a static entry stays as it is
  CHECK_FALSE(moved());
  t.age(50, 100, 100);  // nothing old enough
  CHECK_FALSE(moved());
  t.age(150, 100, 100);  // 10 goes stale
  CHECK(moved());
  CHECK_FALSE(t.erase(1, 99));
  CHECK_FALSE(moved());
  REQUIRE(t.erase(1, 10));
  CHECK(moved());
}
