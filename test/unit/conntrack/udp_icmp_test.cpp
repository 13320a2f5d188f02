// UDP and ICMP tracking, ICMP errors RELATED to the flow they quote, and
// the generic tracker.
#include <catch2/catch.hpp>

#include "dpgate/conntrack/view.hpp"
#include "flows.hpp"

using namespace ct_test;

namespace {
constexpr Direction O = Direction::kOriginal;
constexpr Direction R = Direction::kReply;
}  // namespace

TEST_CASE("an unreplied UDP flow is NEW for 30 seconds, then gone") {
  Table t(config(16));
  const auto q = udp("198.18.0.1", 5353, "198.18.1.1", 53);
  Entry* e = t.insert(q, invert(q), datagram(), kT0);
  REQUIRE(e);
  CHECK(t.seconds_left(*e, kT0) == 30);
  CHECK(ct_view(t, *e, O, t.track(*e, O, datagram(), kT0 + sec(10)), kT0 + sec(10)).state ==
        ct_state::kNew);
  CHECK(t.seconds_left(*e, kT0 + sec(10)) == 30);
  Direction d;
  CHECK(t.lookup(q, kT0 + sec(39), &d) == e);
  CHECK(t.lookup(q, kT0 + sec(40), &d) == nullptr);
}

TEST_CASE("a UDP reply makes the flow ESTABLISHED; the next packet assures it; after 2 s it is a stream") {
  Table t(config(16));
  const auto q = udp("198.18.0.1", 5353, "198.18.1.1", 53);
  Entry* e = t.insert(q, invert(q), datagram(), kT0);
  REQUIRE(e);

  const uint64_t t1 = kT0 + ms(500);
  CHECK(t.track(*e, R, datagram(), t1) == TrackResult::kAccept);
  CHECK(e->has(status::kSeenReply));
  CHECK_FALSE(e->has(status::kAssured));
  CHECK(t.seconds_left(*e, t1) == 30);
  CHECK(ct_view(t, *e, R, TrackResult::kAccept, t1).state == ct_state::kEstablished);
  CHECK(ct_view(t, *e, O, TrackResult::kAccept, t1).state == ct_state::kEstablished);

  const uint64_t t2 = kT0 + sec(1);
  t.track(*e, O, datagram(), t2);
  CHECK(e->has(status::kAssured));
  CHECK(t.seconds_left(*e, t2) == 30);  // not yet two seconds old

  const uint64_t t3 = kT0 + sec(3);
  t.track(*e, R, datagram(), t3);
  CHECK(t.seconds_left(*e, t3) == 120);
}

TEST_CASE("UDP timeouts are configurable") {
  Timeouts custom;
  custom.udp = 5;
  custom.udp_stream = 50;
  Table t(config(16, custom));
  const auto q = udp("198.18.0.1", 1000, "198.18.1.1", 2000);
  Entry* e = t.insert(q, invert(q), datagram(), kT0);
  CHECK(t.seconds_left(*e, kT0) == 5);
  t.track(*e, R, datagram(), kT0 + sec(1));
  CHECK_FALSE(e->flags & entry_flag::kUdpStream);
  t.track(*e, O, datagram(), kT0 + sec(4));
  CHECK(t.seconds_left(*e, kT0 + sec(4)) == 50);
  // A stream once, a stream for good: the flag decides from now on and the
  // start time in aux (the entry's second line) is not read again.
  CHECK(e->flags & entry_flag::kUdpStream);
  e->aux = kT0;
  t.track(*e, R, datagram(), kT0 + sec(5));
  CHECK(t.seconds_left(*e, kT0 + sec(5)) == 50);
}

TEST_CASE("with accounting, per-direction counters count packets and IP bytes") {
  Table t(config(16, {}, true));
  REQUIRE(t.accounting());
  const auto q = udp("198.18.0.1", 1000, "198.18.1.1", 2000);
  Entry* e = t.insert(q, invert(q), datagram(100), kT0);
  t.track(*e, O, datagram(200), kT0);
  t.track(*e, R, datagram(1500), kT0);
  CHECK(packets(t, *e, O) == 2);
  CHECK(bytes(t, *e, O) == 300);
  CHECK(packets(t, *e, R) == 1);
  CHECK(bytes(t, *e, R) == 1500);
  CHECK(t.info(*e, kT0).accounted);
  // A flow taking a freed entry starts from zero.
  t.remove(*e);
  Entry* again = t.insert(q, invert(q), datagram(60), kT0);
  REQUIRE(again == e);
  CHECK(packets(t, *e, O) == 1);
  CHECK(bytes(t, *e, O) == 60);
  CHECK(packets(t, *e, R) == 0);
  CHECK(bytes(t, *e, R) == 0);
}

TEST_CASE("without accounting (the default, as the kernel's) nothing is counted or reported") {
  Table t(config(16));
  CHECK_FALSE(t.accounting());
  const auto q = udp("198.18.0.1", 1000, "198.18.1.1", 2000);
  Entry* e = t.insert(q, invert(q), datagram(100), kT0);
  t.track(*e, R, datagram(1500), kT0);
  const FlowInfo f = t.info(*e, kT0);
  CHECK_FALSE(f.accounted);
  CHECK(f.packets[0] == 0);
  CHECK(f.bytes[1] == 0);
}

TEST_CASE("an ICMP echo is tracked by its identifier and answered by the echo reply") {
  Table t(config(16));
  const auto ping = icmp("198.18.0.1", "198.18.1.1", 77);
  Entry* e = t.insert(ping, invert(ping), icmp_msg(kIcmpEchoRequest), kT0);
  REQUIRE(e);
  CHECK(t.seconds_left(*e, kT0) == 30);
  CHECK(ct_view(t, *e, O, TrackResult::kAccept, kT0).state == ct_state::kNew);

  const auto pong = icmp("198.18.1.1", "198.18.0.1", 77);
  Direction d;
  REQUIRE(t.lookup(pong, kT0 + sec(1), &d) == e);
  CHECK(d == R);
  CHECK(t.track(*e, R, icmp_msg(kIcmpEchoReply), kT0 + sec(1)) == TrackResult::kAccept);
  CHECK(ct_view(t, *e, R, TrackResult::kAccept, kT0 + sec(1)).state == ct_state::kEstablished);
  CHECK_FALSE(e->has(status::kAssured));  // ICMP is never assured

  CHECK(t.lookup(icmp("198.18.1.1", "198.18.0.1", 78), kT0, &d) == nullptr);
  // A request in the reply direction is not an answer.
  CHECK(t.track(*e, R, icmp_msg(kIcmpEchoRequest), kT0 + sec(2)) == TrackResult::kInvalid);
  CHECK(t.lookup(ping, kT0 + sec(31), &d) == nullptr);
}

TEST_CASE("an echo reply or an ICMP error cannot start a flow") {
  const auto pong = icmp("198.18.1.1", "198.18.0.1", 77);
  CHECK_FALSE(may_start_flow(pong, icmp_msg(kIcmpEchoReply), Timeouts{}));
  CHECK_FALSE(may_start_flow(icmp("198.18.1.1", "198.18.0.1", 0), icmp_msg(3), Timeouts{}));
  CHECK(may_start_flow(icmp("198.18.1.1", "198.18.0.1", 0), icmp_msg(13), Timeouts{}));
  Table t(config(16));
  InsertStatus st;
  CHECK(t.insert(pong, invert(pong), icmp_msg(kIcmpEchoReply), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kInvalid);
  CHECK(is_icmp_error(3));
  CHECK(is_icmp_error(11));
  CHECK_FALSE(is_icmp_error(8));
}

TEST_CASE("an ICMP error is RELATED to the flow whose packet it quotes, in the error's direction") {
  Table t(config(16));
  const auto c = tcp("198.18.0.1", 40000, "198.18.1.1", 80);
  Entry* e = t.insert(c, invert(c), syn(), kT0);
  REQUIRE(e);
  Direction d;

  // A router past the server says the client's packet could not go on:
  // the error travels to the client, as replies do.
  REQUIRE(t.find_related(c, kT0, &d) == e);
  CHECK(d == R);
  const CtView v = ct_view_related(t, *e, d, kT0);
  CHECK(v.state == ct_state::kRelated);
  CHECK(v.dir == R);
  CHECK(v.has_flow);

  // The client says the server's packet could not be delivered: original.
  REQUIRE(t.find_related(invert(c), kT0, &d) == e);
  CHECK(d == O);

  // An error about a flow nobody tracks relates to nothing.
  CHECK(t.find_related(tcp("198.18.0.9", 1, "198.18.1.1", 80), kT0, &d) == nullptr);
}

TEST_CASE("an ICMP error quoting a source-translated packet finds the flow by its reply tuple") {
  Table t(config(16));
  const auto c = udp("10.0.0.5", 5000, "198.18.1.1", 53);
  auto reply = invert(c);
  reply.dst = ip("198.18.0.100");  // SNAT to the gateway
  reply.dst_port = net::to_be16(61000);
  Entry* e = t.insert(c, reply, datagram(), kT0);
  REQUIRE(e);
  CHECK(e->has(status::kSrcNat));
  CHECK_FALSE(e->has(status::kDstNat));
  Direction d;
  // The far side quotes the packet as it left the gateway.
  REQUIRE(t.find_related(udp("198.18.0.100", 61000, "198.18.1.1", 53), kT0, &d) == e);
  CHECK(d == R);
  CHECK((ct_view_related(t, *e, d, kT0).state & ct_state::kSnat) != 0);
}

TEST_CASE("other protocols are tracked generically with a 600 second timeout") {
  Table t(config(16));
  auto gre = tuple(47, "198.18.0.1", 0, "198.18.1.1", 0);
  Entry* e = t.insert(gre, invert(gre), datagram(), kT0);
  REQUIRE(e);
  CHECK(t.seconds_left(*e, kT0) == 600);
  Direction d;
  REQUIRE(t.lookup(invert(gre), kT0, &d) == e);
  CHECK(t.track(*e, d, datagram(), kT0) == TrackResult::kAccept);
  CHECK(ct_view(t, *e, d, TrackResult::kAccept, kT0).state == ct_state::kEstablished);
}

TEST_CASE("the NEW view before insertion carries the NAT chosen so far") {
  const auto c = tcp("198.18.0.1", 40000, "198.18.2.10", 80);  // to a VIP
  CtView v = ct_view_new(c, invert(c));
  CHECK(v.state == ct_state::kNew);
  CHECK(v.status == 0);
  auto to_backend = invert(c);
  to_backend.src = ip("198.18.3.1");
  to_backend.src_port = net::to_be16(8080);
  v = ct_view_new(c, to_backend);
  CHECK(v.state == (ct_state::kNew | ct_state::kDnat));
  CHECK(v.status == status::kDstNat);
  CHECK(ct_view_untracked().state == ct_state::kUntracked);
  CHECK_FALSE(ct_view_untracked().has_flow);
  CHECK(ct_view_invalid().state == ct_state::kInvalid);
}

TEST_CASE("the fast path's view in parts (scalars or a status snapshot now, the rest when rules read them) equals ct_view") {
  Table t(config(16));
  const auto q = udp("198.18.0.1", 5353, "198.19.0.10", 53);
  const auto translated = udp("198.18.2.2", 5353, "198.18.0.1", 5353);  // a DNATed reply tuple
  Entry* e = t.insert(q, translated, datagram(), kT0);
  REQUIRE(e);
  e->mark = 0x42;
  auto same = [](const CtView& a, const CtView& b) {
    return a.state == b.state && a.status == b.status && a.dir == b.dir && a.has_flow == b.has_flow &&
           a.confirmed == b.confirmed && a.mark == b.mark && a.expire_s == b.expire_s && a.orig == b.orig &&
           a.reply == b.reply;
  };
  for (const Direction d : {O, R}) {
    for (const TrackResult r : {TrackResult::kAccept, TrackResult::kIgnore, TrackResult::kInvalid}) {
      const CtView whole = ct_view(t, *e, d, r, kT0 + sec(3));
      CtView parts = ct_view_invalid();
      parts.orig = parts.reply = udp("198.18.9.9", 1, "198.18.9.9", 2);  // what the slot held before
      parts.mark = 0x99;  // the worker's connmark slot, until it loads the entry's
      if (ct_view_scalars(parts, t, *e, d, r, kT0 + sec(3))) {
        ct_view_tuples(parts, *e);
        parts.mark = e->mark;
      }
      CHECK(same(parts, whole));
      if (r == TrackResult::kInvalid) continue;
      // Without --ctexpire: the status snapshot when tracked, the rest when
      // a rule reads the view, also after the flow's status moved on.
      CtView lazy = ct_view_invalid();
      lazy.orig = lazy.reply = parts.orig;
      ct_view_snapshot(lazy, *e);
      CHECK(lazy.confirmed);
      const uint16_t status_then = e->status;
      e->status |= status::kSeenReply | status::kAssured;
      ct_view_complete(lazy, d);
      ct_view_tuples(lazy, *e);
      lazy.mark = e->mark;
      e->status = status_then;
      CtView eager = whole;
      eager.expire_s = 0;
      CHECK(same(lazy, eager));
    }
  }
  CtView v;
  CHECK(ct_view_scalars(v, t, *e, O, TrackResult::kAccept, kT0));
  CHECK(v.confirmed);
  CHECK_FALSE(ct_view_scalars(v, t, *e, O, TrackResult::kInvalid, kT0));
  CHECK_FALSE(v.has_flow);
}

TEST_CASE("translated_destination and translated_source (and their IPv4 forms) are the halves of translated(), for every NAT shape, applied where rewrites_destination and rewrites_source say") {
  struct Shape {
    net::FiveTuple orig, reply;
  };
  const auto q = tcp("198.18.0.1", 40000, "198.19.0.10", 80);
  const auto ping = icmp("198.18.0.1", "198.19.0.10", 0x1111);
  const Shape shapes[] = {
      {q, invert(q)},                                            // untranslated
      {q, tcp("198.18.2.2", 8080, "198.18.0.1", 40000)},         // DNAT
      {q, tcp("198.19.0.10", 80, "198.18.1.1", 61000)},          // SNAT
      {q, tcp("198.18.2.2", 8080, "198.18.1.1", 61000)},         // both
      {ping, icmp("198.19.0.10", "198.18.1.1", 0x2222)},         // SNAT of an echo: new identifier
      {ping, icmp("198.18.2.2", "198.18.0.1", 0x1111)},          // DNAT of an echo
  };
  for (const Shape& s : shapes) {
    Table t(config(16));
    Entry* e = t.insert(s.orig, s.reply, s.orig.proto == 1 ? icmp_msg(8) : syn(), kT0);
    REQUIRE(e);
    for (const Direction d : {O, R}) {
      const net::FiveTuple whole = translated(*e, d);
      const Endpoint to = translated_destination(*e, d);
      const Endpoint from = translated_source(*e, d);
      CHECK(to.addr == whole.dst);
      CHECK(to.port == (s.orig.proto == 1 ? whole.src_port : whole.dst_port));
      CHECK(from.addr == whole.src);
      CHECK(from.port == whole.src_port);
      const Endpoint4 to4 = translated_destination4(*e, d), from4 = translated_source4(*e, d);
      CHECK(to4.addr == whole.dst.v4());
      CHECK(to4.port == to.port);
      CHECK(from4.addr == whole.src.v4());
      CHECK(from4.port == from.port);
      // The data plane's sequence: PREROUTING rewrites the destination half,
      // POSTROUTING the source half, each only where the status bits say the
      // flow translates it. What leaves is translated(e, d); a half skipped
      // leaves its address unchanged.
      net::FiveTuple p = e->tuple(d);
      const bool icmp = s.orig.proto == 1;
      if (rewrites_destination(*e, d)) {
        p.dst = to.addr;
        (icmp ? p.src_port : p.dst_port) = to.port;
      } else {
        CHECK(to.addr == p.dst);
        if (!icmp) CHECK(to.port == p.dst_port);
      }
      if (rewrites_source(*e, d)) {
        p.src = from.addr;
        p.src_port = from.port;
      } else {
        CHECK(from.addr == p.src);
      }
      CHECK(p == whole);
      const net::FiveTuple in = e->tuple(d);
      CHECK(rewrites_destination(*e, d) == (whole.dst != in.dst || (!icmp && whole.dst_port != in.dst_port)));
      CHECK(rewrites_source(*e, d) == (whole.src != in.src || (!icmp && whole.src_port != in.src_port)));
    }
  }
}
