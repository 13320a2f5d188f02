// The bucket compare the conntrack index's lookups use: the SIMD lanes
// against the scalar ones, for signatures in no, one, several and every slot.
#include <catch2/catch.hpp>

#include <random>

#include "dpgate/conntrack/signatures.hpp"

using namespace dpgate::conntrack;

TEST_CASE("the SIMD bucket compare finds a signature in the same slots as the scalar one") {
  std::mt19937 rng(3);
  for (int round = 0; round < 20000; ++round) {
    uint32_t lanes[8];
    // Few distinct values, so that equal lanes are common; 0 is an empty slot.
    for (auto& l : lanes) l = rng() % 4 == 0 ? 0 : 0x80000000u + rng() % 3;
    const uint32_t sig = round % 7 == 0 ? 0 : 0x80000000u + rng() % 3;
    const uint32_t want = signatures::equal_lanes_scalar(lanes, sig);
    REQUIRE(signatures::equal_lanes(lanes, sig) == want);
#if defined(__SSE2__)
    REQUIRE(signatures::equal_lanes_sse2(lanes, sig) == want);
#endif
  }
  uint32_t all[8] = {5, 5, 5, 5, 5, 5, 5, 5};
  CHECK(signatures::equal_lanes(all, 5) == 0xffu);
  CHECK(signatures::equal_lanes(all, 6) == 0u);
}
