// xt_recent lists shared by workers: the kernel's --set/--rcheck/--update/
// --remove/--seconds/--hitcount/--reap behaviour, and concurrent writers.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "dpgate/lb/recent.hpp"

using dpgate::lb::RecentTable;

namespace {
constexpr uint64_t kSecond = 1000000000ull;
// Two lists as rules::recent_list_id numbers them (31 bits).
constexpr uint32_t kList = 0x1234567;
constexpr uint32_t kOther = 0x7654321;
}  // namespace

TEST_CASE("an address set in a list is found there and nowhere else") {
  RecentTable t(1024);
  REQUIRE(t.set(kList, 0xc6120102, 100 * kSecond, 64));
  CHECK(t.check(kList, 0xc6120102, 101 * kSecond, 0, 0, false, false, false, 0));
  CHECK_FALSE(t.check(kOther, 0xc6120102, 101 * kSecond, 0, 0, false, false, false, 0));
  CHECK_FALSE(t.check(kList, 0xc6120103, 101 * kSecond, 0, 0, false, false, false, 0));
}

TEST_CASE("--seconds limits the check to recent hits; --rcheck does not refresh, --update does") {
  RecentTable t(1024);
  t.set(kList, 7, 100 * kSecond, 64);
  CHECK(t.check(kList, 7, 110 * kSecond, 10800, 0, false, false, false, 0));
  CHECK_FALSE(t.check(kList, 7, 200 * kSecond, 60, 0, false, false, false, 0));
  // --update at 150 s within 60 s? No: the last hit is at 100 s. Refresh with --set.
  t.set(kList, 7, 190 * kSecond, 64);
  CHECK(t.check(kList, 7, 200 * kSecond, 60, 0, false, true, false, 0));   // --update refreshes to 200 s
  CHECK(t.check(kList, 7, 255 * kSecond, 60, 0, false, false, false, 0));  // 200 s is within 60 s of 255 s
  CHECK_FALSE(t.check(kList, 7, 261 * kSecond, 60, 0, false, false, false, 0));
}

TEST_CASE("--hitcount needs that many hits inside the window") {
  RecentTable t(1024);
  for (int i = 0; i < 3; ++i) t.set(kList, 9, (100 + i) * kSecond, 64);
  CHECK(t.check(kList, 9, 103 * kSecond, 10, 3, false, false, false, 0));
  CHECK_FALSE(t.check(kList, 9, 103 * kSecond, 10, 4, false, false, false, 0));
  CHECK_FALSE(t.check(kList, 9, 111 * kSecond, 10, 3, false, false, false, 0));  // the first hit aged out
}

TEST_CASE("--reap forgets an address whose hits are all too old") {
  RecentTable t(1024);
  t.set(kList, 5, 100 * kSecond, 64);
  CHECK_FALSE(t.check(kList, 5, 500 * kSecond, 60, 0, true, false, false, 0));
  CHECK(t.size() == 0);
  CHECK_FALSE(t.check(kList, 5, 500 * kSecond, 0, 0, false, false, false, 0));
}

TEST_CASE("--remove forgets the address, and a later --set starts afresh") {
  RecentTable t(1024);
  t.set(kList, 5, 100 * kSecond, 64);
  CHECK(t.remove(kList, 5));
  CHECK_FALSE(t.remove(kList, 5));
  CHECK_FALSE(t.check(kList, 5, 100 * kSecond, 0, 0, false, false, false, 0));
  t.set(kList, 5, 200 * kSecond, 64);
  CHECK_FALSE(t.check(kList, 5, 200 * kSecond, 10, 2, false, false, false, 0));  // only the new hit
}

TEST_CASE("--rttl compares the TTL of the last hit") {
  RecentTable t(1024);
  t.set(kList, 5, 100 * kSecond, 64);
  CHECK(t.check(kList, 5, 100 * kSecond, 0, 0, false, false, true, 64));
  CHECK_FALSE(t.check(kList, 5, 100 * kSecond, 0, 0, false, false, true, 63));
}

TEST_CASE("a full table makes room by forgetting the least recently hit address") {
  // 64 slots: every probe window is the whole table, so the replacement is
  // exactly least-recently-used, as xt_recent's full list.
  RecentTable t(64);
  for (uint32_t a = 1; a <= 64; ++a) REQUIRE(t.set(kList, a, a * kSecond, 64));
  CHECK(t.evictions() == 0);
  REQUIRE(t.set(kList, 1, 100 * kSecond, 64));  // address 1 is hit again: now the newest
  for (uint32_t a = 65; a <= 200; ++a) REQUIRE(t.set(a % 2 ? kList : kOther, a, (100 + a) * kSecond, 64));
  CHECK(t.evictions() == 200 - 64);
  CHECK(t.size() == 64);
  // The last 64 addresses set are remembered, in their own lists; address 1
  // went when it became the least recent (after 63 newer ones), as did 2..136.
  for (uint32_t a = 137; a <= 200; ++a) {
    INFO("address " << a);
    CHECK(t.check(a % 2 ? kList : kOther, a, 300 * kSecond, 0, 0, false, false, false, 0));
    CHECK_FALSE(t.check(a % 2 ? kOther : kList, a, 300 * kSecond, 0, 0, false, false, false, 0));
  }
  for (uint32_t a = 1; a <= 136; ++a) {
    INFO("address " << a);
    CHECK_FALSE(t.check(kList, a, 300 * kSecond, 0, 0, false, false, false, 0));
    CHECK_FALSE(t.check(kOther, a, 300 * kSecond, 0, 0, false, false, false, 0));
  }
}

TEST_CASE("an address that takes an evicted slot starts without the old address's hits") {
  RecentTable t(64);
  for (uint32_t a = 1; a <= 64; ++a) {
    for (int hit = 0; hit < 5; ++hit) t.set(kList, a, (a * 10 + hit) * kSecond, 64);
  }
  REQUIRE(t.set(kList, 1000, 2000 * kSecond, 32));  // replaces address 1 (5 hits)
  CHECK(t.evictions() == 1);
  CHECK(t.check(kList, 1000, 2000 * kSecond, 10, 1, false, false, false, 0));
  CHECK_FALSE(t.check(kList, 1000, 2000 * kSecond, 0, 2, false, false, false, 0));  // one hit, not six
  CHECK(t.check(kList, 1000, 2000 * kSecond, 0, 0, false, false, true, 32));       // its own TTL
  CHECK_FALSE(t.check(kList, 1, 2000 * kSecond, 0, 0, false, false, false, 0));
  CHECK(t.check(kList, 2, 2000 * kSecond, 0, 5, false, false, false, 0));
}

TEST_CASE("workers setting the same and different addresses concurrently lose nothing") {
  RecentTable t(1 << 14);
  std::vector<std::thread> threads;
  for (uint32_t w = 0; w < 4; ++w) {
    threads.emplace_back([&t, w] {
      for (uint32_t a = 0; a < 2000; ++a) {
        t.set(kList, a, (a + 1) * kSecond, 64);           // shared addresses
        t.set(kOther, w * 100000 + a, kSecond, 64);       // this worker's own
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(t.size() == 2000 + 4 * 2000);
  CHECK(t.evictions() == 0);
  for (uint32_t a = 0; a < 2000; ++a) REQUIRE(t.check(kList, a, (a + 1) * kSecond, 0, 4, false, false, false, 0));
}
