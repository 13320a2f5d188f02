// The IPv4 forwarding table: LPM over connected routes (from port addresses),
// the router's own addresses, and static routes. Built by the control thread,
// then immutable: workers read it through a published const pointer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "dpgate/net/addr.hpp"

struct rte_lpm;

namespace dpgate::route {

enum class NextHopKind : uint8_t {
  kForward,            // send out of `port` to `gateway`, or to the destination when on-link
  kLocal,              // one of the router's own addresses
  kDirectedBroadcast,  // a connected subnet's broadcast address: never forwarded (RFC 2644)
};

struct NextHop {
  NextHopKind kind = NextHopKind::kForward;
  uint16_t port = 0;     // index into the router's ports
  uint32_t gateway = 0;  // host order; 0 means on-link: the destination is the neighbour
  friend bool operator==(const NextHop&, const NextHop&) = default;
};

struct PortAddresses {
  uint16_t port = 0;
  std::vector<net::Ipv4Prefix> addresses;
};

struct StaticRoute {
  net::Ipv4Prefix prefix;
  uint32_t gateway = 0;  // host order; 0 for an on-link route
  uint16_t port = 0;
};

class Fib {
 public:
  static constexpr uint32_t kNoRoute = UINT32_MAX;

  // Builds the table. Errors (a gateway not on any connected network of its
  // port, too many routes) come back as text. Control thread; needs the EAL.
  static std::variant<std::unique_ptr<Fib>, std::string> build(
      const std::vector<PortAddresses>& ports, const std::vector<StaticRoute>& routes,
      const std::string& name);
  ~Fib();
  Fib(const Fib&) = delete;
  Fib& operator=(const Fib&) = delete;

  // Next-hop indices for n destinations (host order), kNoRoute where none
  // matches. Workers; any number concurrently.
  void lookup_bulk(const uint32_t* dst, uint32_t* next_hop, unsigned n) const;
  uint32_t lookup(uint32_t dst) const;
  const NextHop& next_hop(uint32_t index) const { return next_hops_[index]; }
  size_t route_count() const { return route_count_; }

  struct Entry {
    net::Ipv4Prefix prefix;
    NextHop next_hop;
  };
  // Every installed prefix, for `dpgatectl route` and tests. Control thread.
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  Fib() = default;
  rte_lpm* lpm_ = nullptr;
  std::vector<NextHop> next_hops_;
  std::vector<Entry> entries_;
  size_t route_count_ = 0;
  uint32_t default_next_hop_ = kNoRoute;
};

}  // namespace dpgate::route
