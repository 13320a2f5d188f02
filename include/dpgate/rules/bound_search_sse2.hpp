// bound_search's count, four bounds a compare with SSE2 (every x86-64 CPU
// has it). Compared against the scalar count in test/unit/rules. Any thread.
#pragma once

#include <emmintrin.h>

#include <cstdint>

namespace dpgate::rules::bound_search {

// How many of window[0 .. n) are <= v, for n <= 16; window[n .. 16) must be
// readable and is ignored. SSE2 compares signed lanes: both sides are
// offset by 2^31 so that the order is the unsigned one.
inline uint32_t count_at_most_sse2(const uint32_t* window, uint32_t n, uint32_t v) {
  const __m128i bias = _mm_set1_epi32(INT32_MIN);
  const __m128i value = _mm_xor_si128(_mm_set1_epi32(static_cast<int32_t>(v)), bias);
  const __m128i* w = reinterpret_cast<const __m128i*>(window);
  // Bit i: window[i] > v. The four compares are independent (written out:
  // GCC kept a loop over them, with a shift by a register each time).
  const auto above4 = [&](int q) {
    const __m128i b = _mm_xor_si128(_mm_loadu_si128(w + q), bias);
    return static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(b, value))));
  };
  const uint32_t above = above4(0) | above4(1) << 4 | above4(2) << 8 | above4(3) << 12;
  return static_cast<uint32_t>(__builtin_popcount(~above & ((1u << n) - 1)));
}

}  // namespace dpgate::rules::bound_search
