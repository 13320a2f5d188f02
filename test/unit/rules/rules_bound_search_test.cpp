// The classifier's field lookup: the SIMD count against the scalar one, and
// the windowed search against std::upper_bound, over field values at, between
// and beyond the bounds, with slack that must be ignored.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "dpgate/rules/bound_search.hpp"

using namespace dpgate::rules;

namespace {

// `count` sorted distinct bounds, the first 0, then kWindow slack values that
// would change any answer they leaked into (0: at most every value).
std::vector<uint32_t> make_bounds(std::mt19937& rng, uint32_t count, uint32_t max) {
  std::vector<uint32_t> b{0};
  std::uniform_int_distribution<uint32_t> any(1, max);
  while (b.size() < count) {
    const uint32_t x = any(rng);
    if (std::find(b.begin(), b.end(), x) == b.end()) b.push_back(x);
  }
  std::sort(b.begin(), b.end());
  b.insert(b.end(), bound_search::kWindow, 0);
  return b;
}

// The values worth asking about: each bound, its neighbours, the extremes.
std::vector<uint32_t> probes(const std::vector<uint32_t>& b, uint32_t count) {
  std::vector<uint32_t> v{0, 1, 0xfffffffeu, 0xffffffffu, 0x7fffffffu, 0x80000000u};
  for (uint32_t i = 0; i < count; ++i) {
    v.push_back(b[i]);
    v.push_back(b[i] - 1);
    v.push_back(b[i] + 1);
  }
  return v;
}

}  // namespace

TEST_CASE("the SIMD count of bounds at most a value agrees with the scalar count") {
  std::mt19937 rng(7);
  for (uint32_t n = 0; n <= bound_search::kWindow; ++n) {
    for (const uint32_t max : {100u, 0xffffu, 0xffffffffu}) {
      std::vector<uint32_t> w(bound_search::kWindow);
      std::uniform_int_distribution<uint32_t> any(0, max);
      for (auto& x : w) x = any(rng);
      std::sort(w.begin(), w.begin() + n);
      for (const uint32_t v : probes(w, n)) {
        const uint32_t want = bound_search::count_at_most_scalar(w.data(), n, v);
        REQUIRE(bound_search::count_at_most(w.data(), n, v) == want);
#if defined(__SSE2__)
        REQUIRE(bound_search::count_at_most_sse2(w.data(), n, v) == want);
#endif
      }
    }
  }
}

TEST_CASE("a field value finds the last bound at most it, whatever the slack after the bounds") {
  std::mt19937 rng(11);
  for (uint32_t count = 1; count <= 300; count += count < 40 ? 1 : 37) {
    for (const uint32_t max : {300u, 0xffffu, 0xffffffffu}) {
      if (count > max) continue;
      const std::vector<uint32_t> b = make_bounds(rng, count, max);
      for (const uint32_t v : probes(b, count)) {
        const size_t want = size_t(std::upper_bound(b.begin(), b.begin() + count, v) - b.begin()) - 1;
        INFO("count " << count << " value " << v);
        REQUIRE(bound_search::last_at_most(b.data(), count, v) == want);
      }
    }
  }
}
