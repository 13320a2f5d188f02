// HugeArray: the conntrack table's storage on transparent huge pages.
#include <catch2/catch.hpp>

#include <cstdint>
#include <utility>

#include "dpgate/util/huge_array.hpp"

using dpgate::util::HugeArray;

namespace {
struct alignas(64) Slot {
  uint64_t a = 7;
  uint32_t b = 0;
};
}  // namespace

TEST_CASE("a huge array holds value-initialised, aligned elements and moves without copying") {
  HugeArray<Slot> slots(100'000);  // 6.4 MB: more than one huge page
  REQUIRE(slots.size() == 100'000);
  CHECK(reinterpret_cast<uintptr_t>(slots.get()) % 64 == 0);
  CHECK(slots[0].a == 7);
  CHECK(slots[99'999].a == 7);
  CHECK(slots[99'999].b == 0);
  slots[42].b = 5;
  const Slot* before = slots.get();
  HugeArray<Slot> moved(std::move(slots));
  CHECK(moved.get() == before);
  CHECK(moved[42].b == 5);
  CHECK(slots.get() == nullptr);
  HugeArray<Slot> other(3);
  other = std::move(moved);
  CHECK(other[42].b == 5);
  CHECK(other.size() == 100'000);
  HugeArray<uint32_t> empty(0);
  CHECK(empty.size() == 0);
}
