// The classifier's field lookup (Program::find_in_segment): in a sorted
// array of interval bounds, the last bound at most a packet's field value.
// Pure functions, any thread; the SIMD count lives in bound_search_sse2.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#include "dpgate/rules/bound_search_sse2.hpp"
#endif

namespace dpgate::rules::bound_search {

// Bounds are counted in windows of this many: an array searched here must be
// readable this many elements past its last bound (the values there are ignored).
constexpr uint32_t kWindow = 16;

// How many of window[0 .. n) are <= v, n <= kWindow: the reference the
// SIMD count is tested against, and the count where there is none.
inline uint32_t count_at_most_scalar(const uint32_t* window, uint32_t n, uint32_t v) {
  uint32_t count = 0;
  for (uint32_t i = 0; i < n; ++i) count += window[i] <= v ? 1 : 0;
  return count;
}

inline uint32_t count_at_most(const uint32_t* window, uint32_t n, uint32_t v) {
#if defined(__SSE2__)
  return count_at_most_sse2(window, n, v);
#else
  return count_at_most_scalar(window, n, v);
#endif
}

// The index of the last of `count` sorted bounds that is <= v, bounds[0]
// being 0. Binary search steps down to a window of kWindow bounds, then one
// count of that window. The steps are conditional moves, not branches (a
// packet's fields are unpredictable; a mispredicted step costs more than the
// search), and the count compares the window's bounds independently instead
// of the last four steps' chain of dependent loads.
inline size_t last_at_most(const uint32_t* bounds, uint32_t count, uint32_t v) {
  const uint32_t* base = bounds;
  uint32_t n = count;
  while (n > kWindow) {
    const uint32_t half = n / 2;
    base = base[half] <= v ? base + half : base;
    n -= half;
  }
  return static_cast<size_t>(base - bounds) + count_at_most(base, n, v) - 1;
}

}  // namespace dpgate::rules::bound_search
