// The conntrack index's bucket compare: which of a bucket's signature slots
// hold a key's signature, as a bit mask (Table's lookups walk its set bits,
// so that where the flow sits in its bucket costs no branch per slot). Pure
// functions, any thread; the SIMD compare lives in signatures_sse2.hpp.
#pragma once

#include <cstdint>

#if defined(__SSE2__)
#include "dpgate/conntrack/signatures_sse2.hpp"
#endif

namespace dpgate::conntrack::signatures {

// Bit i set when lanes[i] == sig, for the 8 lanes at `lanes`: the
// reference the SIMD compare is tested against.
inline uint32_t equal_lanes_scalar(const uint32_t* lanes, uint32_t sig) {
  uint32_t bits = 0;
  for (unsigned i = 0; i < 8; ++i) bits |= uint32_t{lanes[i] == sig} << i;
  return bits;
}

inline uint32_t equal_lanes(const uint32_t* lanes, uint32_t sig) {
#if defined(__SSE2__)
  return equal_lanes_sse2(lanes, sig);
#else
  return equal_lanes_scalar(lanes, sig);
#endif
}

}  // namespace dpgate::conntrack::signatures
