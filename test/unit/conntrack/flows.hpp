// Tuples, segments and a millisecond clock for the conntrack unit tests.
#pragma once

#include <cstdint>

#include "dpgate/conntrack/table.hpp"
#include "dpgate/conntrack/track.hpp"
#include "dpgate/net/addr.hpp"

namespace ct_test {

using namespace dpgate;
using namespace dpgate::conntrack;

// The tests' `now` is in milliseconds.
constexpr uint64_t kHz = 1000;
constexpr uint64_t ms(uint64_t v) { return v; }
constexpr uint64_t sec(uint64_t v) { return v * 1000; }
constexpr uint64_t kT0 = sec(1'000'000);

inline net::IpAddr ip(const char* text) {
  return net::IpAddr::from_v4(net::to_be32(*net::parse_ipv4(text)));
}

inline net::FiveTuple tuple(uint8_t proto, const char* src, uint16_t sport, const char* dst,
                            uint16_t dport) {
  net::FiveTuple t;
  t.src = ip(src);
  t.dst = ip(dst);
  t.src_port = net::to_be16(sport);
  t.dst_port = net::to_be16(dport);
  t.proto = proto;
  t.family = net::Family::kIpv4;
  return t;
}
inline net::FiveTuple tcp(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  return tuple(6, src, sport, dst, dport);
}
inline net::FiveTuple udp(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  return tuple(17, src, sport, dst, dport);
}
inline net::FiveTuple icmp(const char* src, const char* dst, uint16_t id) {
  return tuple(1, src, id, dst, 0);
}

inline L4Info seg(uint8_t flags, uint32_t seq = 1000, uint32_t ack = 0, uint16_t len = 0) {
  L4Info p;
  p.tcp_flags = flags;
  p.tcp_seq = seq;
  p.tcp_ack = ack;
  p.l4_payload_len = len;
  p.ip_len = static_cast<uint16_t>(40 + len);
  return p;
}
inline L4Info syn() { return seg(kTcpSyn); }
inline L4Info synack() { return seg(kTcpSyn | kTcpAck); }
inline L4Info ack() { return seg(kTcpAck); }
inline L4Info finack() { return seg(kTcpFin | kTcpAck); }
inline L4Info rst() { return seg(kTcpRst); }
inline L4Info datagram(uint16_t ip_len = 100) {
  L4Info p;
  p.ip_len = ip_len;
  return p;
}
inline L4Info icmp_msg(uint8_t type) {
  L4Info p;
  p.icmp_type = type;
  p.ip_len = 84;
  return p;
}

inline TableConfig config(uint32_t capacity, Timeouts timeouts = {}, bool accounting = false) {
  TableConfig c;
  c.capacity = capacity;
  c.ticks_per_second = kHz;
  c.timeouts = timeouts;
  c.accounting = accounting;
  return c;
}

// A flow's packet count in one direction (the table counts with accounting on).
inline uint64_t packets(const Table& t, const Entry& e, Direction d) {
  return t.counters(e).packets[static_cast<unsigned>(d)];
}
inline uint64_t bytes(const Table& t, const Entry& e, Direction d) {
  return t.counters(e).bytes[static_cast<unsigned>(d)];
}

}  // namespace ct_test
