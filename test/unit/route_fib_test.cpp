// The forwarding table built from port addresses and static routes.
#include <catch2/catch.hpp>

#include "dpgate/route/fib.hpp"

using namespace dpgate::route;
using dpgate::net::parse_ipv4;
using dpgate::net::parse_ipv4_prefix;

namespace {

uint32_t ip(const char* s) { return *parse_ipv4(s); }

std::unique_ptr<Fib> build(const std::vector<PortAddresses>& ports, const std::vector<StaticRoute>& routes) {
  auto r = Fib::build(ports, routes, "test");
  if (auto* e = std::get_if<std::string>(&r)) FAIL(*e);
  return std::move(std::get<std::unique_ptr<Fib>>(r));
}

const std::vector<PortAddresses> kPorts = {
    {0, {*parse_ipv4_prefix("198.18.1.1/24")}},
    {1, {*parse_ipv4_prefix("198.18.2.1/24"), *parse_ipv4_prefix("198.18.5.1/30")}},
};

}  // namespace

TEST_CASE("connected networks route on-link out of their port") {
  auto fib = build(kPorts, {});
  const NextHop& nh = fib->next_hop(fib->lookup(ip("198.18.2.77")));
  CHECK(nh.kind == NextHopKind::kForward);
  CHECK(nh.port == 1);
  CHECK(nh.gateway == 0);
  CHECK(fib->next_hop(fib->lookup(ip("198.18.5.2"))).port == 1);
}

TEST_CASE("the router's own addresses are local and broadcasts are not forwarded") {
  auto fib = build(kPorts, {});
  CHECK(fib->next_hop(fib->lookup(ip("198.18.1.1"))).kind == NextHopKind::kLocal);
  CHECK(fib->next_hop(fib->lookup(ip("198.18.2.1"))).kind == NextHopKind::kLocal);
  CHECK(fib->next_hop(fib->lookup(ip("198.18.1.255"))).kind == NextHopKind::kDirectedBroadcast);
}

TEST_CASE("static routes use their gateway and the longest prefix wins") {
  auto fib = build(kPorts, {{*parse_ipv4_prefix("0.0.0.0/0"), ip("198.18.2.254"), 1},
                            {*parse_ipv4_prefix("198.19.0.0/16"), ip("198.18.1.9"), 0},
                            {*parse_ipv4_prefix("198.19.7.0/24"), 0, 1}});
  CHECK(fib->next_hop(fib->lookup(ip("198.20.0.1"))).gateway == ip("198.18.2.254"));
  CHECK(fib->next_hop(fib->lookup(ip("198.19.1.1"))).gateway == ip("198.18.1.9"));
  CHECK(fib->next_hop(fib->lookup(ip("198.19.1.1"))).port == 0);
  const NextHop& onlink = fib->next_hop(fib->lookup(ip("198.19.7.3")));
  CHECK(onlink.gateway == 0);
  CHECK(onlink.port == 1);
  CHECK(fib->next_hop(fib->lookup(ip("198.18.1.1"))).kind == NextHopKind::kLocal);
}

TEST_CASE("no default route means no route") {
  auto fib = build(kPorts, {});
  CHECK(fib->lookup(ip("198.19.0.1")) == Fib::kNoRoute);
  uint32_t dst[3] = {ip("198.19.0.1"), ip("198.18.1.5"), ip("198.18.2.1")};
  uint32_t nh[3];
  fib->lookup_bulk(dst, nh, 3);
  CHECK(nh[0] == Fib::kNoRoute);
  CHECK(fib->next_hop(nh[1]).port == 0);
  CHECK(fib->next_hop(nh[2]).kind == NextHopKind::kLocal);
}

// lookup_bulk takes four addresses at a time through DPDK's vector lookup
// and the rest one by one: every slot must agree with lookup(), for hits in
// the 24-bit table, in its /25-and-longer extension, and for misses.
TEST_CASE("a bulk lookup agrees with single lookups, four at a time and the rest") {
  auto fib = build(kPorts, {{*parse_ipv4_prefix("198.19.0.0/16"), ip("198.18.1.9"), 0},
                            {*parse_ipv4_prefix("198.19.7.128/25"), ip("198.18.2.7"), 1},
                            {*parse_ipv4_prefix("198.19.7.5/32"), 0, 1}});
  const uint32_t dst[11] = {ip("198.19.0.1"),   ip("198.19.7.129"), ip("198.19.7.5"),  ip("198.20.0.1"),
                            ip("198.19.7.4"),   ip("198.18.1.5"),   ip("10.0.0.1"),    ip("198.19.7.200"),
                            ip("198.18.2.1"),   ip("198.19.7.127"), ip("203.0.113.9")};
  for (unsigned n : {11u, 8u, 4u, 1u}) {
    uint32_t nh[11];
    fib->lookup_bulk(dst, nh, n);
    for (unsigned i = 0; i < n; ++i) {
      INFO("n " << n << " slot " << i);
      CHECK(nh[i] == fib->lookup(dst[i]));
    }
  }
  uint32_t nh[11];
  fib->lookup_bulk(dst, nh, 11);
  CHECK(nh[3] == Fib::kNoRoute);
  CHECK(fib->next_hop(nh[1]).gateway == ip("198.18.2.7"));
  CHECK(fib->next_hop(nh[7]).gateway == ip("198.18.2.7"));
  CHECK(fib->next_hop(nh[9]).gateway == ip("198.18.1.9"));
  CHECK(fib->next_hop(nh[2]).gateway == 0);
  CHECK(fib->next_hop(nh[2]).port == 1);
}

TEST_CASE("a gateway off every connected network is an error") {
  auto r = Fib::build(kPorts, {{*parse_ipv4_prefix("198.19.0.0/16"), ip("198.18.9.1"), 0}}, "test");
  REQUIRE(std::holds_alternative<std::string>(r));
  CHECK_THAT(std::get<std::string>(r), Catch::Contains("198.18.9.1") && Catch::Contains("not on a connected network"));
}
