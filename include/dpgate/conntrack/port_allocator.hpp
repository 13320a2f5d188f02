// Choosing the translated port (or ICMP identifier) of a NAT binding so that
// the flow's reply tuple is unique in the worker's table, and so that replies
// can be steered by port: worker k of n hands out only ports p with
// p % n == k (DESIGN §3 point 2). One PortAllocator per worker; only that
// worker calls it, between its lookups and the insert of the new flow.
#pragma once

#include <cstdint>

#include "dpgate/conntrack/table.hpp"
#include "dpgate/net/addr.hpp"

namespace dpgate::conntrack {

// Which side of the connection NAT rewrites.
enum class NatManip : uint8_t {
  kSrc,  // SNAT/MASQUERADE: the reply tuple's destination port
  kDst,  // DNAT/REDIRECT: the reply tuple's source port
};

enum class PortMode : uint8_t {
  // No flag: keep the original port if it is allowed and unused, else scan
  // from a random start (nf_nat_l4proto_unique_tuple).
  kPreserve,
  // --random: never keep it; scan from a start derived from a keyed hash of
  // the connection's addresses and peer port (sequential, random start).
  kRandom,
  // --random-fully: never keep it; scan from a fresh random start each time.
  kRandomFully,
};

// Host-order port range; {0, 0} means none was given: SNAT then uses the
// kernel's default for the original port's class (1-511, 600-1023,
// 1024-65535; ICMP identifiers 0-65535) and DNAT keeps the port.
struct PortRange {
  uint16_t min = 0;
  uint16_t max = 0;
  bool given() const { return min != 0 || max != 0; }
};

// This worker's share of the port space.
struct PortSlice {
  uint16_t index = 0;  // k
  uint16_t count = 1;  // n
};

class PortAllocator {
 public:
  // Probes per choice, as the kernel bounds them (128, then 64, 32, 16 from
  // fresh random starts): a full range fails in bounded time.
  static constexpr unsigned kMaxAttempts = 128;

  PortAllocator(PortSlice slice, uint64_t seed);

  // `reply` is the new flow's reply tuple with the translated address in
  // place and the original port still in the field NAT rewrites (SNAT:
  // dst_port; DNAT: src_port; ICMP: the identifier in src_port). Sets that
  // field to a port of `range` in this worker's slice such that no live
  // entry of `table` holds `reply`, and returns true; returns false (and
  // leaves `reply` as it was) when none was found. Never returns a tuple
  // in use. The owning worker only.
  bool choose(const Table& table, net::FiveTuple& reply, NatManip manip, PortRange range,
              PortMode mode, uint64_t now);

  PortSlice slice() const { return slice_; }

 private:
  uint64_t next_random();
  uint64_t keyed_hash(const net::FiveTuple& reply) const;

  PortSlice slice_;
  uint64_t rng_;
  uint64_t key_;
};

// The first port of [min, max] in `slice` and how many there are.
struct SlicedRange {
  uint32_t first = 0;
  uint32_t count = 0;
};
SlicedRange slice_range(PortRange range, PortSlice slice);

}  // namespace dpgate::conntrack
