// NAT port choice: unique reply tuples, the worker's slice of the port space,
// the requested range, and the kernel's preserve / --random / --random-fully.
#include <catch2/catch.hpp>

#include <set>

#include "dpgate/conntrack/port_allocator.hpp"
#include "flows.hpp"

using namespace ct_test;

namespace {

const net::IpAddr kGateway = ip("198.18.0.100");

net::FiveTuple inside(uint32_t n) {
  return udp("10.0.0.1", static_cast<uint16_t>(20000 + n), "198.18.1.1", 53);
}

// The reply tuple of `orig` once SNAT'd to the gateway, port still original.
net::FiveTuple masqueraded(const net::FiveTuple& orig) {
  net::FiveTuple r = invert(orig);
  r.dst = kGateway;
  return r;
}

}  // namespace

TEST_CASE("a worker hands out only ports of its slice inside the range, each once") {
  Table t(config(1024));
  PortAllocator alloc({1, 3}, 42);
  const PortRange range{1024, 2047};
  std::set<uint16_t> used;
  for (uint32_t i = 0; i < 300; ++i) {
    net::FiveTuple reply = masqueraded(inside(i));
    REQUIRE(alloc.choose(t, reply, NatManip::kSrc, range, PortMode::kRandomFully, kT0));
    const uint16_t port = net::to_host(reply.dst_port);
    INFO("flow " << i << " port " << port);
    CHECK(port % 3 == 1);
    CHECK(port >= 1024);
    CHECK(port <= 2047);
    CHECK(used.insert(port).second);
    REQUIRE(t.insert(inside(i), reply, datagram(), kT0));
  }
}

TEST_CASE("the allocator never returns a tuple in use and fails cleanly when the slice is full") {
  Table t(config(64));
  PortAllocator alloc({0, 2}, 7);
  const PortRange range{5000, 5019};  // 10 ports of slice 0 of 2
  std::set<uint16_t> used;
  for (uint32_t i = 0; i < 10; ++i) {
    net::FiveTuple reply = masqueraded(inside(i));
    REQUIRE(alloc.choose(t, reply, NatManip::kSrc, range, PortMode::kPreserve, kT0));
    CHECK(used.insert(net::to_host(reply.dst_port)).second);
    CHECK_FALSE(t.in_use(reply, kT0));
    REQUIRE(t.insert(inside(i), reply, datagram(), kT0));
  }
  net::FiveTuple reply = masqueraded(inside(10));
  const net::FiveTuple before = reply;
  CHECK_FALSE(alloc.choose(t, reply, NatManip::kSrc, range, PortMode::kPreserve, kT0));
  CHECK(reply == before);
  // A different peer makes the same ports free again: only whole tuples clash.
  net::FiveTuple other = masqueraded(udp("10.0.0.1", 20010, "198.18.1.2", 53));
  CHECK(alloc.choose(t, other, NatManip::kSrc, range, PortMode::kPreserve, kT0));
  // And once the flows expire, their ports are free.
  CHECK(alloc.choose(t, reply, NatManip::kSrc, range, PortMode::kPreserve, kT0 + sec(31)));
}

TEST_CASE("without flags the original port is kept when it is free and in the slice") {
  Table t(config(64));
  PortAllocator alloc({0, 2}, 7);
  net::FiveTuple reply = masqueraded(inside(0));  // port 20000, even: slice 0
  REQUIRE(alloc.choose(t, reply, NatManip::kSrc, {}, PortMode::kPreserve, kT0));
  CHECK(net::to_host(reply.dst_port) == 20000);
  REQUIRE(t.insert(inside(0), reply, datagram(), kT0));

  // The same port from another inside host is taken now: another one, of
  // the same class (1024-65535) and slice.
  const auto second = udp("10.0.0.2", 20000, "198.18.1.1", 53);
  net::FiveTuple reply2 = masqueraded(second);
  REQUIRE(alloc.choose(t, reply2, NatManip::kSrc, {}, PortMode::kPreserve, kT0));
  const uint16_t p = net::to_host(reply2.dst_port);
  CHECK(p != 20000);
  CHECK(p >= 1024);
  CHECK(p % 2 == 0);

  // An odd original port is not in slice 0: it is never kept.
  net::FiveTuple reply3 = masqueraded(inside(1));
  REQUIRE(alloc.choose(t, reply3, NatManip::kSrc, {}, PortMode::kPreserve, kT0));
  CHECK(net::to_host(reply3.dst_port) % 2 == 0);

  // Privileged ports stay privileged.
  net::FiveTuple reply4 = masqueraded(udp("10.0.0.3", 123, "198.18.1.1", 123));
  REQUIRE(t.insert(udp("10.0.0.9", 123, "198.18.1.1", 123), reply4, datagram(), kT0));
  REQUIRE(alloc.choose(t, reply4, NatManip::kSrc, {}, PortMode::kPreserve, kT0));
  CHECK(net::to_host(reply4.dst_port) >= 1);
  CHECK(net::to_host(reply4.dst_port) <= 511);
  CHECK(net::to_host(reply4.dst_port) != 123);
}

TEST_CASE("--random never keeps the port and starts from the same place for the same peers") {
  Table t(config(64));
  PortAllocator alloc({0, 1}, 99);
  std::set<uint16_t> random_ports, fully_ports;
  for (int i = 0; i < 50; ++i) {
    net::FiveTuple r = masqueraded(inside(0));
    REQUIRE(alloc.choose(t, r, NatManip::kSrc, {}, PortMode::kRandom, kT0));
    random_ports.insert(net::to_host(r.dst_port));
    net::FiveTuple f = masqueraded(inside(0));
    REQUIRE(alloc.choose(t, f, NatManip::kSrc, {}, PortMode::kRandomFully, kT0));
    fully_ports.insert(net::to_host(f.dst_port));
  }
  CHECK(random_ports.size() == 1);
  CHECK(random_ports.count(20000) == 0);
  CHECK(fully_ports.size() > 40);
}

TEST_CASE("DNAT without a port range keeps the port, and refuses a tuple in use") {
  Table t(config(16));
  const auto c = tcp("198.18.0.1", 40000, "198.18.2.10", 80);
  net::FiveTuple reply = invert(c);
  reply.src = ip("198.18.3.1");
  PortAllocator alloc({0, 4}, 1);
  REQUIRE(alloc.choose(t, reply, NatManip::kDst, {}, PortMode::kPreserve, kT0));
  CHECK(net::to_host(reply.src_port) == 80);
  REQUIRE(t.insert(c, reply, syn(), kT0));
  CHECK_FALSE(alloc.choose(t, reply, NatManip::kDst, {}, PortMode::kPreserve, kT0));
  // With a range the backend port moves within it.
  REQUIRE(alloc.choose(t, reply, NatManip::kDst, {8080, 8090}, PortMode::kPreserve, kT0));
  CHECK(net::to_host(reply.src_port) % 4 == 0);
  CHECK(net::to_host(reply.src_port) >= 8080);
}

TEST_CASE("ICMP echo is source-translated through its identifier") {
  Table t(config(16));
  PortAllocator alloc({1, 2}, 5);
  const auto ping = icmp("10.0.0.1", "198.18.1.1", 4);  // even id: not slice 1
  net::FiveTuple reply = invert(ping);
  reply.dst = kGateway;
  REQUIRE(alloc.choose(t, reply, NatManip::kSrc, {}, PortMode::kPreserve, kT0));
  CHECK(net::to_host(reply.src_port) % 2 == 1);
  CHECK(reply.dst_port == ping.dst_port);
  Entry* e = t.insert(ping, reply, icmp_msg(kIcmpEchoRequest), kT0);
  REQUIRE(e);
  CHECK(e->has(status::kSrcNat));
  Direction d;
  CHECK(t.lookup(icmp("198.18.1.1", "198.18.0.100", net::to_host(reply.src_port)), kT0, &d) == e);
  CHECK(d == Direction::kReply);
}

TEST_CASE("a slice is the ports of the range congruent to the worker's index") {
  CHECK(slice_range({1024, 65535}, {0, 1}).count == 64512);
  const SlicedRange s = slice_range({1000, 1010}, {2, 4});
  CHECK(s.first == 1002);
  CHECK(s.count == 3);  // 1002, 1006, 1010
  CHECK(slice_range({1000, 1001}, {3, 4}).count == 0);
  CHECK(slice_range({10, 5}, {0, 1}).count == 0);
}
