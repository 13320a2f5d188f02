// NAT port choice: netfilter's get_unique_tuple / nf_nat_l4proto_unique_tuple
// restricted to one worker's slice of the port space.
#include "dpgate/conntrack/port_allocator.hpp"

namespace dpgate::conntrack {

namespace {

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The kernel's defaults when SNAT names no port range: keep the port's class.
PortRange default_range(uint16_t port, bool icmp) {
  if (icmp) return {0, 65535};
  if (port < 512) return {1, 511};
  if (port < 1024) return {600, 1023};
  return {1024, 65535};
}

}  // namespace

SlicedRange slice_range(PortRange range, PortSlice slice) {
  SlicedRange r;
  const uint32_t n = slice.count == 0 ? 1 : slice.count;
  const uint32_t k = slice.index % n;
  if (range.max < range.min) return r;
  const uint32_t first = range.min + (k + n - range.min % n) % n;
  if (first > range.max) return r;
  r.first = first;
  r.count = (range.max - first) / n + 1;
  return r;
}

PortAllocator::PortAllocator(PortSlice slice, uint64_t seed) : slice_(slice), rng_(seed) {
  if (slice_.count == 0) slice_.count = 1;
  key_ = splitmix(rng_);
}

uint64_t PortAllocator::next_random() { return splitmix(rng_); }

uint64_t PortAllocator::keyed_hash(const net::FiveTuple& reply) const {
  // Addresses and the peer's port: stable per destination, unpredictable
  // without the key (what --random's secure port offset gives).
  uint64_t words[5];
  __builtin_memcpy(words, &reply, sizeof(words));
  uint64_t h = key_;
  for (uint64_t w : words) {
    h ^= w;
    h = splitmix(h);
  }
  return h;
}

bool PortAllocator::choose(const Table& table, net::FiveTuple& reply, NatManip manip,
                           PortRange range, PortMode mode, uint64_t now) {
  const bool icmp = reply.proto == 1;
  net::be16* field = (icmp || manip == NatManip::kDst) ? &reply.src_port : &reply.dst_port;
  const net::be16 original = *field;
  const uint16_t orig_port = net::to_host(original);

  if (!range.given()) {
    // "If it's dst rewrite, can't change port."
    if (manip == NatManip::kDst && !icmp) return !table.in_use(reply, now);
    range = default_range(orig_port, icmp);
  }
  const uint32_t n = slice_.count;
  const SlicedRange sliced = slice_range(range, slice_);
  if (sliced.count == 0) return false;

  if (mode == PortMode::kPreserve && orig_port >= range.min && orig_port <= range.max &&
      orig_port % n == slice_.index % n && !table.in_use(reply, now)) {
    return true;
  }

  uint64_t off;
  if (mode == PortMode::kRandom) {
    *field = net::be16{};
    off = keyed_hash(reply);
  } else if (manip == NatManip::kDst && mode == PortMode::kPreserve) {
    off = 0;  // DNAT without flags scans from the bottom of the range
  } else {
    off = next_random();
  }

  unsigned attempts = sliced.count < kMaxAttempts ? sliced.count : kMaxAttempts;
  for (;;) {
    for (unsigned i = 0; i < attempts; ++i, ++off) {
      const uint32_t port = sliced.first + static_cast<uint32_t>(off % sliced.count) * n;
      *field = net::to_be16(static_cast<uint16_t>(port));
      if (!table.in_use(reply, now)) return true;
    }
    if (attempts >= sliced.count || attempts < 16) break;
    attempts /= 2;
    off = next_random();
  }
  *field = original;
  return false;
}

}  // namespace dpgate::conntrack
