// The TCP tracker against netfilter's state table, timeouts and the ct
// states `-m conntrack --ctstate` would see.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#include "dpgate/conntrack/view.hpp"
#include "flows.hpp"

using namespace ct_test;

namespace {

constexpr Direction O = Direction::kOriginal;
constexpr Direction R = Direction::kReply;

const net::FiveTuple kClient = tcp("198.18.0.1", 40000, "198.18.1.1", 80);

struct Step {
  const char* what;
  Direction dir;
  L4Info packet;
  TrackResult result;
  TcpState state;
  uint32_t seconds_left;  // right after the packet
  uint16_t ct_state;      // what the packet's view says
};

// Runs a flow from its first SYN through `steps`, one second apart.
void walk(const std::vector<Step>& steps, Timeouts timeouts = {}) {
  Table t(config(16, timeouts));
  uint64_t now = kT0;
  Entry* e = t.insert(kClient, invert(kClient), syn(), now);
  REQUIRE(e != nullptr);
  for (const Step& s : steps) {
    INFO(s.what);
    now += sec(1);
    const TrackResult r = t.track(*e, s.dir, s.packet, now);
    CHECK(r == s.result);
    CHECK(e->tcp_state() == s.state);
    CHECK(t.seconds_left(*e, now) == s.seconds_left);
    CHECK((ct_view(t, *e, s.dir, r, now).state & 0x4f) == s.ct_state);
  }
}

}  // namespace

TEST_CASE("a handshake and a client-initiated close walk netfilter's states and timeouts") {
  using namespace ct_state;
  walk({
      {"SYN/ACK", R, synack(), TrackResult::kAccept, TcpState::kSynRecv, 60, kEstablished},
      {"ACK", O, ack(), TrackResult::kAccept, TcpState::kEstablished, 432000, kEstablished},
      {"data", R, ack(), TrackResult::kAccept, TcpState::kEstablished, 432000, kEstablished},
      {"client FIN", O, finack(), TrackResult::kAccept, TcpState::kFinWait, 120, kEstablished},
      {"server ACK", R, ack(), TrackResult::kAccept, TcpState::kCloseWait, 60, kEstablished},
      {"server FIN", R, finack(), TrackResult::kAccept, TcpState::kLastAck, 30, kEstablished},
      {"last ACK", O, ack(), TrackResult::kAccept, TcpState::kTimeWait, 120, kEstablished},
      {"retransmitted last ACK", O, ack(), TrackResult::kAccept, TcpState::kTimeWait, 120,
       kEstablished},
  });
}

TEST_CASE("the first SYN is NEW with the SYN_SENT timeout and the flow is assured by the final ACK") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  REQUIRE(e);
  CHECK(e->tcp_state() == TcpState::kSynSent);
  CHECK(t.seconds_left(*e, kT0) == 120);
  CHECK(e->has(status::kConfirmed));
  CHECK_FALSE(e->has(status::kSeenReply));
  CHECK(ct_view(t, *e, O, TrackResult::kAccept, kT0).state == ct_state::kNew);
  t.track(*e, R, synack(), kT0);
  CHECK(e->has(status::kSeenReply));
  CHECK_FALSE(e->has(status::kAssured));
  t.track(*e, O, ack(), kT0);
  CHECK(e->has(status::kAssured));
}

TEST_CASE("retransmitted SYNs before a reply stay NEW and do not renew the timeout") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  REQUIRE(e);
  const uint64_t later = kT0 + sec(50);
  CHECK(t.track(*e, O, syn(), later) == TrackResult::kAccept);
  CHECK(e->tcp_state() == TcpState::kSynSent);
  CHECK(t.seconds_left(*e, later) == 70);
  CHECK(ct_view(t, *e, O, TrackResult::kAccept, later).state == ct_state::kNew);
  Direction d;
  CHECK(t.lookup(kClient, kT0 + sec(120), &d) == nullptr);
}

TEST_CASE("a server-initiated close and a RST walk the same table from the other side") {
  using namespace ct_state;
  walk({
      {"SYN/ACK", R, synack(), TrackResult::kAccept, TcpState::kSynRecv, 60, kEstablished},
      {"ACK", O, ack(), TrackResult::kAccept, TcpState::kEstablished, 432000, kEstablished},
      {"server FIN", R, finack(), TrackResult::kAccept, TcpState::kFinWait, 120, kEstablished},
      {"client FIN", O, finack(), TrackResult::kAccept, TcpState::kLastAck, 30, kEstablished},
      {"server ACK", R, ack(), TrackResult::kAccept, TcpState::kTimeWait, 120, kEstablished},
  });
  walk({
      {"SYN/ACK", R, synack(), TrackResult::kAccept, TcpState::kSynRecv, 60, kEstablished},
      {"ACK", O, ack(), TrackResult::kAccept, TcpState::kEstablished, 432000, kEstablished},
      {"RST", R, rst(), TrackResult::kAccept, TcpState::kClose, 10, kEstablished},
      {"late ACK", O, ack(), TrackResult::kAccept, TcpState::kClose, 10, kEstablished},
  });
}

TEST_CASE("packets the TCP table marks invalid are INVALID and leave the flow unchanged") {
  using namespace ct_state;
  struct Case {
    const char* what;
    std::vector<Step> prefix;
    Direction dir;
    L4Info packet;
  };
  const Step synack_step{"SYN/ACK", R, synack(), TrackResult::kAccept, TcpState::kSynRecv, 60,
                         kEstablished};
  const Step ack_step{"ACK", O, ack(), TrackResult::kAccept, TcpState::kEstablished, 432000,
                      kEstablished};
  const std::vector<Case> cases = {
      {"client ACK in SYN_SENT (no SYN/ACK seen)", {}, O, ack()},
      {"client FIN in SYN_SENT", {}, O, finack()},
      {"client SYN/ACK in SYN_SENT", {}, O, synack()},
      {"server FIN in SYN_SENT", {}, R, finack()},
      {"server SYN in SYN_RECV", {synack_step}, R, syn()},
      {"client SYN/ACK when established", {synack_step, ack_step}, O, synack()},
      {"server SYN when established", {synack_step, ack_step}, R, syn()},
      {"FIN without ACK (bad flag combination)", {synack_step, ack_step}, O, seg(kTcpFin)},
      {"SYN and FIN together", {synack_step, ack_step}, O, seg(kTcpSyn | kTcpFin)},
      {"no flags at all", {synack_step, ack_step}, O, seg(0)},
      {"PSH alone", {synack_step, ack_step}, R, seg(kTcpPsh)},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    Table t(config(16, {}, true));
    uint64_t now = kT0;
    Entry* e = t.insert(kClient, invert(kClient), syn(), now);
    REQUIRE(e);
    for (const Step& s : c.prefix) REQUIRE(t.track(*e, s.dir, s.packet, now) == s.result);
    const TcpState before = e->tcp_state();
    const uint32_t left = t.seconds_left(*e, now + sec(1));
    const uint64_t before_packets = packets(t, *e, c.dir);
    now += sec(1);
    const TrackResult r = t.track(*e, c.dir, c.packet, now);
    CHECK(r == TrackResult::kInvalid);
    CHECK(e->tcp_state() == before);
    CHECK(t.seconds_left(*e, now) == left);
    CHECK(packets(t, *e, c.dir) == before_packets);
    CHECK(ct_view(t, *e, c.dir, r, now).state == kInvalid);
    CHECK_FALSE(ct_view(t, *e, c.dir, r, now).has_flow);
    CHECK(t.stats().invalid.get() == 1);
  }
}

TEST_CASE("only a SYN, or a mid-stream ACK with tcp_loose, may start a TCP flow") {
  Timeouts strict;
  strict.tcp_loose = false;
  const Timeouts loose;
  CHECK(may_start_flow(kClient, syn(), loose));
  CHECK(may_start_flow(kClient, seg(kTcpSyn | kTcpEce | kTcpCwr), loose));
  CHECK(may_start_flow(kClient, ack(), loose));
  CHECK_FALSE(may_start_flow(kClient, ack(), strict));
  CHECK(may_start_flow(kClient, syn(), strict));
  for (const L4Info& p : {synack(), finack(), rst(), seg(kTcpRst | kTcpAck), seg(0), seg(kTcpFin)}) {
    INFO("flags " << int(p.tcp_flags));
    CHECK_FALSE(may_start_flow(kClient, p, loose));
  }
  Table t(config(16));
  InsertStatus st;
  CHECK(t.insert(kClient, invert(kClient), synack(), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kInvalid);
  CHECK(t.size() == 0);
}

TEST_CASE("a picked-up connection is ESTABLISHED with the unacknowledged timeout until answered") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), ack(), kT0);
  REQUIRE(e);
  CHECK(e->tcp_state() == TcpState::kEstablished);
  CHECK(t.seconds_left(*e, kT0) == 300);
  CHECK(ct_view(t, *e, O, TrackResult::kAccept, kT0).state == ct_state::kNew);
  CHECK(t.track(*e, R, ack(), kT0 + sec(1)) == TrackResult::kAccept);
  CHECK(t.seconds_left(*e, kT0 + sec(1)) == 300);  // SEEN_REPLY comes after this packet
  CHECK_FALSE(e->has(status::kAssured));
  CHECK(t.track(*e, O, ack(), kT0 + sec(2)) == TrackResult::kAccept);
  CHECK(e->has(status::kAssured));
  CHECK(t.seconds_left(*e, kT0 + sec(2)) == 432000);
}

TEST_CASE("a SYN inside an established connection is ignored: state and timeout stay") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  t.track(*e, R, synack(), kT0);
  t.track(*e, O, ack(), kT0);
  const uint64_t later = kT0 + sec(100);
  CHECK(t.track(*e, O, syn(), later) == TrackResult::kIgnore);
  CHECK(e->tcp_state() == TcpState::kEstablished);
  CHECK(t.seconds_left(*e, later) == 432000 - 100);
  CHECK(ct_view(t, *e, O, TrackResult::kIgnore, later).state == ct_state::kEstablished);
  CHECK(t.track(*e, R, synack(), later) == TrackResult::kIgnore);  // late SYN/ACK
}

TEST_CASE("a RST answering the SYN deletes the flow at once but the RST itself passes") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  REQUIRE(e);
  CHECK(t.track(*e, R, seg(kTcpRst | kTcpAck), kT0) == TrackResult::kAccept);
  CHECK(e->kind == EntryKind::kDead);
  CHECK(ct_view(t, *e, R, TrackResult::kAccept, kT0).state == ct_state::kEstablished);
  Direction d;
  CHECK(t.lookup(kClient, kT0, &d) == nullptr);
  CHECK(t.stats().killed.get() == 1);
  t.begin_burst();
  CHECK(t.size() == 0);
  CHECK(t.insert(kClient, invert(kClient), syn(), kT0) != nullptr);
}

TEST_CASE("a SYN after TIME_WAIT reopens: the old flow goes and the SYN starts a new one") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  for (auto [dir, p] : std::vector<std::pair<Direction, L4Info>>{
           {R, synack()}, {O, ack()}, {O, finack()}, {R, finack()}, {O, ack()}}) {
    REQUIRE(t.track(*e, dir, p, kT0) == TrackResult::kAccept);
  }
  REQUIRE(e->tcp_state() == TcpState::kTimeWait);
  CHECK(t.track(*e, O, syn(), kT0 + sec(5)) == TrackResult::kReopen);
  Direction d;
  CHECK(t.lookup(kClient, kT0 + sec(5), &d) == nullptr);
  Entry* fresh = t.insert(kClient, invert(kClient), syn(), kT0 + sec(5));
  REQUIRE(fresh);
  CHECK(fresh->tcp_state() == TcpState::kSynSent);
  CHECK_FALSE(fresh->has(status::kAssured));
}

TEST_CASE("after a client RST its new SYN reopens; after a server RST the SYN/ACK resynchronises") {
  SECTION("client aborted") {
    Table t(config(16));
    Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
    t.track(*e, R, synack(), kT0);
    t.track(*e, O, ack(), kT0);
    REQUIRE(t.track(*e, O, rst(), kT0) == TrackResult::kAccept);
    REQUIRE(e->tcp_state() == TcpState::kClose);
    CHECK(t.track(*e, O, syn(), kT0 + sec(1)) == TrackResult::kReopen);
  }
  SECTION("server aborted") {
    Table t(config(16));
    Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
    t.track(*e, R, synack(), kT0);
    t.track(*e, O, ack(), kT0);
    REQUIRE(t.track(*e, R, rst(), kT0) == TrackResult::kAccept);
    const uint64_t now = kT0 + sec(1);
    CHECK(t.track(*e, O, seg(kTcpSyn, 5000), now) == TrackResult::kIgnore);
    CHECK(e->tcp_state() == TcpState::kClose);
    // A SYN/ACK acknowledging some other segment stays ignored...
    CHECK(t.track(*e, R, seg(kTcpSyn | kTcpAck, 9000, 1234), now) == TrackResult::kIgnore);
    // ...but after the client's SYN is seen again, the matching one resyncs.
    CHECK(t.track(*e, O, seg(kTcpSyn, 5000), now) == TrackResult::kIgnore);
    CHECK(t.track(*e, R, seg(kTcpSyn | kTcpAck, 9000, 5001), now) == TrackResult::kAccept);
    CHECK(e->tcp_state() == TcpState::kSynRecv);
    CHECK(t.seconds_left(*e, now) == 60);
    CHECK(t.track(*e, O, ack(), now) == TrackResult::kAccept);
    CHECK(e->tcp_state() == TcpState::kEstablished);
  }
}

TEST_CASE("a simultaneous open goes through SYN_SENT2 and SYN_RECV to an assured flow") {
  Table t(config(16));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  CHECK(t.track(*e, R, syn(), kT0) == TrackResult::kAccept);
  CHECK(e->tcp_state() == TcpState::kSynSent2);
  CHECK(t.seconds_left(*e, kT0) == 120);
  CHECK(t.track(*e, O, synack(), kT0) == TrackResult::kAccept);
  CHECK(e->tcp_state() == TcpState::kSynRecv);
  CHECK(t.track(*e, R, ack(), kT0) == TrackResult::kAccept);
  CHECK(e->tcp_state() == TcpState::kEstablished);
  CHECK(e->has(status::kAssured));
}

TEST_CASE("TCP timeouts come from the Timeouts the table was built with") {
  Timeouts custom;
  custom.tcp_syn_sent = 7;
  custom.tcp_syn_recv = 8;
  custom.tcp_established = 9000;
  custom.tcp_close = 3;
  Table t(config(16, custom));
  Entry* e = t.insert(kClient, invert(kClient), syn(), kT0);
  CHECK(t.seconds_left(*e, kT0) == 7);
  t.track(*e, R, synack(), kT0);
  CHECK(t.seconds_left(*e, kT0) == 8);
  t.track(*e, O, ack(), kT0);
  CHECK(t.seconds_left(*e, kT0) == 9000);
  t.track(*e, O, rst(), kT0);
  CHECK(t.seconds_left(*e, kT0) == 3);
  Direction d;
  CHECK(t.lookup(kClient, kT0 + sec(3) - ms(4), &d) == e);
  CHECK(t.lookup(kClient, kT0 + sec(3), &d) == nullptr);
}

TEST_CASE("the TCP table's cells match netfilter's for the NONE and ESTABLISHED columns") {
  using K = TcpStep::Kind;
  // ORIGINAL from NONE: SYN opens, ACK picks up, everything else invalid.
  CHECK(tcp_transition(O, TcpFlagClass::kSyn, TcpState::kNone).state == TcpState::kSynSent);
  CHECK(tcp_transition(O, TcpFlagClass::kAck, TcpState::kNone).state == TcpState::kEstablished);
  for (auto cls : {TcpFlagClass::kSynAck, TcpFlagClass::kFin, TcpFlagClass::kRst,
                   TcpFlagClass::kNone}) {
    CHECK(tcp_transition(O, cls, TcpState::kNone).kind == K::kInvalid);
  }
  // REPLY from NONE is never reached: all invalid.
  for (unsigned c = 0; c < kTcpFlagClassCount; ++c) {
    CHECK(tcp_transition(R, static_cast<TcpFlagClass>(c), TcpState::kNone).kind == K::kInvalid);
  }
  // ESTABLISHED: SYN ignored from the client, invalid from the server;
  // SYN/ACK invalid from the client, ignored from the server.
  CHECK(tcp_transition(O, TcpFlagClass::kSyn, TcpState::kEstablished).kind == K::kIgnore);
  CHECK(tcp_transition(R, TcpFlagClass::kSyn, TcpState::kEstablished).kind == K::kInvalid);
  CHECK(tcp_transition(O, TcpFlagClass::kSynAck, TcpState::kEstablished).kind == K::kInvalid);
  CHECK(tcp_transition(R, TcpFlagClass::kSynAck, TcpState::kEstablished).kind == K::kIgnore);
  CHECK(tcp_transition(R, TcpFlagClass::kAck, TcpState::kSynSent).kind == K::kIgnore);
}

TEST_CASE("track()'s inline shortcut for established ACKs leaves every flow as track_any() does") {
  // Two tables fed the same segments, one through each entry point: after
  // every segment the result, all 128 bytes of the entry and its counters agree. Flags
  // mix ACK with PSH, URG, ECE, SYN, FIN, RST; flows are replied or not.
  constexpr uint8_t kFlags[] = {kTcpAck, kTcpAck | kTcpPsh, kTcpAck | kTcpEce | kTcpCwr, kTcpAck | kTcpUrg,
                                kTcpSyn, kTcpSyn | kTcpAck, kTcpFin | kTcpAck, kTcpRst, kTcpRst | kTcpAck,
                                kTcpAck | kTcpFin | kTcpPsh, 0};
  Timeouts loose;
  loose.tcp_loose = true;
  Table shortcut(config(64, loose, true)), full(config(64, loose, true));
  std::mt19937 rng(7);
  uint64_t now = kT0;
  unsigned fast_cases = 0;
  for (unsigned round = 0; round < 200; ++round) {
    const net::FiveTuple flow = tcp("198.18.0.1", static_cast<uint16_t>(1000 + round), "198.18.1.1", 80);
    const L4Info first = rng() % 2 ? syn() : ack();
    Entry* a = shortcut.insert(flow, invert(flow), first, now);
    Entry* b = full.insert(flow, invert(flow), first, now);
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    for (unsigned step = 0; step < 40 && a->kind == EntryKind::kFlow; ++step) {
      shortcut.begin_burst();
      full.begin_burst();
      now += ms(rng() % 5000);
      const Direction dir = rng() % 2 ? Direction::kReply : Direction::kOriginal;
      // ACK-only segments most of the time, so that flows reach ESTABLISHED
      // and stay there for a while.
      const uint8_t flags = rng() % 4 != 0 ? kTcpAck : kFlags[rng() % std::size(kFlags)];
      const L4Info p = seg(flags, rng(), rng(), static_cast<uint16_t>(rng() % 1400));
      if (a->tcp_state() == TcpState::kEstablished && (flags & kTcpClassFlags) == kTcpAck) ++fast_cases;
      INFO("round " << round << " step " << step << " flags " << int(flags));
      const TrackResult ra = shortcut.track(*a, dir, p, now);
      const TrackResult rb = full.track_any(*b, dir, p, now);
      REQUIRE(ra == rb);
      REQUIRE(std::memcmp(a, b, sizeof(Entry)) == 0);
      REQUIRE(std::memcmp(&shortcut.counters(*a), &full.counters(*b), sizeof(Counters)) == 0);
    }
    if (a->kind == EntryKind::kFlow) {
      shortcut.remove(*a);
      full.remove(*b);
    }
  }
  CHECK(fast_cases > 1000);
}
