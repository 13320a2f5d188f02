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
  uint32_t above = 0;  // bit i: window[i] > v
  for (int q = 0; q < 4; ++q) {
    const __m128i b = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(window) + q), bias);
    above |= static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(b, value)))) << (4 * q);
  }
  return static_cast<uint32_t>(__builtin_popcount(~above & ((1u << n) - 1)));
}

}  // namespace dpgate::rules::bound_search
