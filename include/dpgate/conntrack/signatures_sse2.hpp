// signatures.hpp's lane compare with SSE2 (every x86-64 CPU has it):
// compared against the scalar one in test/unit/conntrack. Any thread.
#pragma once

#include <emmintrin.h>

#include <cstdint>

namespace dpgate::conntrack::signatures {

// Bit i set when lanes[i] == sig, for the 8 lanes at `lanes`.
inline uint32_t equal_lanes_sse2(const uint32_t* lanes, uint32_t sig) {
  const __m128i s = _mm_set1_epi32(static_cast<int32_t>(sig));
  const __m128i* l = reinterpret_cast<const __m128i*>(lanes);
  const auto equal4 = [&](int q) {
    return static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_loadu_si128(l + q), s))));
  };
  return equal4(0) | equal4(1) << 4;
}

}  // namespace dpgate::conntrack::signatures
