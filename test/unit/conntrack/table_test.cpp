// The conntrack table: both directions, bulk lookup, clashes, early drop,
// bounded expiry, redirect stubs, walks and deletes by filter.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "dpgate/conntrack/format.hpp"
#include "flows.hpp"

using namespace ct_test;

namespace {

constexpr Direction O = Direction::kOriginal;
constexpr Direction R = Direction::kReply;

net::FiveTuple client(uint32_t n, uint16_t dport = 80) {
  net::FiveTuple t = tcp("198.18.0.0", 0, "198.18.1.1", dport);
  t.src = net::IpAddr::from_v4(net::to_be32(0xc6120000u + (n >> 12)));
  t.src_port = net::to_be16(static_cast<uint16_t>(10000 + (n & 0xfff)));
  return t;
}

net::FiveTuple udp_client(uint32_t n) {
  net::FiveTuple t = client(n, 53);
  t.proto = 17;
  return t;
}

// Inserts a TCP flow and completes its handshake: ESTABLISHED, ASSURED.
Entry* assured(Table& t, const net::FiveTuple& c, uint64_t now) {
  Entry* e = t.insert(c, invert(c), syn(), now);
  REQUIRE(e);
  t.track(*e, R, synack(), now);
  t.track(*e, O, ack(), now);
  REQUIRE(e->has(status::kAssured));
  return e;
}

}  // namespace

TEST_CASE("a flow is found by its original and by its reply tuple") {
  Table t(config(64));
  const auto c = tcp("198.18.0.1", 40000, "198.18.2.10", 80);
  auto reply = invert(c);
  reply.src = ip("198.18.3.1");  // DNAT to a backend
  reply.src_port = net::to_be16(8080);
  Entry* e = t.insert(c, reply, syn(), kT0);
  REQUIRE(e);
  Direction d;
  CHECK(t.lookup(c, kT0, &d) == e);
  CHECK(d == O);
  CHECK(t.lookup(reply, kT0, &d) == e);
  CHECK(d == R);
  CHECK(t.lookup(invert(c), kT0, &d) == nullptr);  // the VIP never answers itself
  CHECK(e->orig == c);
  CHECK(e->reply() == reply);
  CHECK(e->has(status::kDstNat));
  CHECK_FALSE(e->has(status::kSrcNat));
  CHECK(e->owner == 0);
  const NatBinding b = nat_binding(*e);
  CHECK(b.dnat);
  CHECK(b.dnat_addr == ip("198.18.3.1"));
  CHECK(net::to_host(b.dnat_port) == 8080);
  CHECK(translated(*e, O) == invert(reply));
  CHECK(translated(*e, R) == invert(c));
  CHECK(t.size() == 1);
}

TEST_CASE("a tuple already used by a live flow cannot be inserted again") {
  Table t(config(64));
  const auto a = udp("198.18.0.1", 1000, "198.18.1.1", 53);
  auto reply = invert(a);
  reply.dst = ip("198.18.0.100");
  reply.dst_port = net::to_be16(50000);
  REQUIRE(t.insert(a, reply, datagram(), kT0));
  InsertStatus st;
  CHECK(t.insert(a, invert(a), datagram(), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kClash);
  // Another client mapped onto the same translated port clashes too.
  const auto b = udp("198.18.0.2", 1000, "198.18.1.1", 53);
  CHECK(t.insert(b, reply, datagram(), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kClash);
  CHECK(t.stats().clashed.get() == 2);
  // Once the first flow has expired its tuples are free again.
  CHECK(t.insert(b, reply, datagram(), kT0 + sec(31), &st) != nullptr);
  CHECK(st == InsertStatus::kOk);
  CHECK(t.size() == 1);
}

TEST_CASE("bulk lookup answers exactly as single lookups on random tuples") {
  const uint64_t seed = Catch::rngSeed() ? Catch::rngSeed() : 20240611;
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Table t(config(4096));
  std::vector<net::FiveTuple> keys;
  auto random_tuple = [&] {
    net::FiveTuple k;
    // A small address space makes near-misses (one field off) common.
    k.src = net::IpAddr::from_v4(net::to_be32(0xc6120000u | (rng() & 0x3f)));
    k.dst = net::IpAddr::from_v4(net::to_be32(0xc6130000u | (rng() & 0x3f)));
    k.src_port = net::to_be16(static_cast<uint16_t>(rng() & 0x1ff));
    k.dst_port = net::to_be16(static_cast<uint16_t>(rng() & 0x7));
    k.proto = (rng() & 1) ? 6 : 17;
    k.family = net::Family::kIpv4;
    return k;
  };
  for (int i = 0; i < 3500; ++i) {
    const net::FiveTuple k = random_tuple();
    net::FiveTuple reply = invert(k);
    if (rng() % 3 == 0) reply.dst_port = net::to_be16(static_cast<uint16_t>(rng()));
    const L4Info first = k.proto == 6 ? syn() : datagram();
    if (t.insert(k, reply, first, kT0)) {
      keys.push_back(k);
      keys.push_back(reply);
    }
  }
  REQUIRE(t.size() > 3000);
  for (int i = 0; i < 3000; ++i) keys.push_back(random_tuple());
  std::shuffle(keys.begin(), keys.end(), rng);

  std::vector<Entry*> bulk(keys.size());
  std::vector<Direction> bulk_dir(keys.size());
  size_t done = 0;
  while (done < keys.size()) {
    const unsigned n = static_cast<unsigned>(std::min<size_t>(1 + rng() % 150, keys.size() - done));
    t.lookup_bulk(&keys[done], n, kT0, &bulk[done], &bulk_dir[done]);
    done += n;
  }
  size_t hits = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    Direction d = O;
    Entry* single = t.lookup(keys[i], kT0, &d);
    INFO("key " << i);
    REQUIRE(bulk[i] == single);
    if (single) {
      ++hits;
      REQUIRE(bulk_dir[i] == d);
      REQUIRE(single->tuple(d) == keys[i]);
    }
  }
  CHECK(hits > 6000);

  // The same keys as a field of larger records, read in place at a stride.
  struct Record {
    uint64_t before[3];
    net::FiveTuple key;
    uint32_t after;
  };
  std::vector<Record> records(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) records[i].key = keys[i];
  std::vector<Entry*> strided(keys.size());
  std::vector<Direction> strided_dir(keys.size());
  for (done = 0; done < keys.size();) {
    const unsigned n = static_cast<unsigned>(std::min<size_t>(1 + rng() % 150, keys.size() - done));
    t.lookup_bulk(&records[done].key, n, kT0, &strided[done], &strided_dir[done], sizeof(Record));
    done += n;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("strided key " << i);
    REQUIRE(strided[i] == bulk[i]);
    if (bulk[i]) REQUIRE(strided_dir[i] == bulk_dir[i]);
  }
}

TEST_CASE("when the table is full the non-assured flows of one bucket are early-dropped for the new one") {
  // netfilter's early_drop_list() deletes every non-assured conntrack of the
  // first chain that has one: the next new flows find room without a scan.
  Table t(config(16));
  for (uint32_t i = 0; i < 16; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  CHECK(t.size() == 16);
  t.begin_burst();
  InsertStatus st;
  Entry* e = t.insert(udp_client(100), invert(udp_client(100)), datagram(), kT0, &st);
  REQUIRE(e);
  CHECK(st == InsertStatus::kOk);
  const uint64_t dropped = t.stats().early_dropped.get();
  REQUIRE(dropped >= 1);
  CHECK(dropped <= 7);  // one bucket's refs at most
  CHECK(t.size() == 16 - dropped + 1);
  CHECK(t.stats().refused.get() == 0);
  unsigned still_there = 0;
  Direction d;
  for (uint32_t i = 0; i < 16; ++i) still_there += t.lookup(udp_client(i), kT0, &d) != nullptr;
  CHECK(still_there == 16 - dropped);
  // The room it made takes the next dropped - 1 flows with no eviction.
  for (uint32_t i = 1; i < dropped; ++i) REQUIRE(t.insert(udp_client(100 + i), invert(udp_client(100 + i)), datagram(), kT0));
  CHECK(t.size() == 16);
  CHECK(t.stats().early_dropped.get() == dropped);
}

TEST_CASE("early drop spares the flows of the current burst and reaps the expired ones it passes") {
  Table t(config(16));
  for (uint32_t i = 0; i < 8; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  // Eight more a long time later: the first eight have expired by then
  // (UDP unreplied: 30 s) and are touched by this burst's inserts no more.
  const uint64_t later = kT0 + ms(3'600'000);
  t.begin_burst();
  for (uint32_t i = 8; i < 16; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), later));
  CHECK(t.size() == 16);
  // Same burst: the eight new flows may not go; only expired ones can.
  uint32_t made = 0;
  for (uint32_t i = 100; i < 140; ++i) made += t.insert(udp_client(i), invert(udp_client(i)), datagram(), later) != nullptr;
  CHECK(t.stats().early_dropped.get() == 0);
  Direction d;
  for (uint32_t i = 8; i < 16; ++i) CHECK(t.lookup(udp_client(i), later, &d) != nullptr);
  // A 16-entry table has 8 buckets, all within the eviction range: every
  // expired flow is found, then the burst's own flows fill the table.
  CHECK(made == 8);
  CHECK(t.stats().expired.get() == 8);
  CHECK(t.stats().refused.get() == 32);
}

TEST_CASE("with only assured flows a full table refuses the new flow and counts it") {
  Table t(config(16));
  for (uint32_t i = 0; i < 16; ++i) assured(t, client(i), kT0);
  t.begin_burst();
  InsertStatus st;
  CHECK(t.insert(client(100), invert(client(100)), syn(), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kFull);
  CHECK(t.stats().refused.get() == 1);
  CHECK(t.stats().early_dropped.get() == 0);
  Direction d;
  for (uint32_t i = 0; i < 16; ++i) CHECK(t.lookup(client(i), kT0, &d) != nullptr);
}

TEST_CASE("a flood of new flows into a full table never evicts an assured flow") {
  Table t(config(1024));
  std::vector<Entry*> established;
  for (uint32_t i = 0; i < 300; ++i) established.push_back(assured(t, client(i), kT0));
  uint64_t refused_or_dropped = 0;
  for (uint32_t i = 0; i < 20000; ++i) {
    if (i % 32 == 0) t.begin_burst();
    const auto f = client(100000 + i, 443);
    if (!t.insert(f, invert(f), syn(), kT0 + ms(i))) ++refused_or_dropped;
  }
  CHECK(t.size() == 1024);
  CHECK(t.stats().early_dropped.get() > 10000);
  CHECK(t.stats().refused.get() == refused_or_dropped);
  Direction d;
  for (uint32_t i = 0; i < 300; ++i) {
    INFO("established flow " << i);
    REQUIRE(t.lookup(client(i), kT0 + sec(30), &d) == established[i]);
    CHECK(established[i]->tcp_state() == TcpState::kEstablished);
    CHECK(t.track(*established[i], O, ack(), kT0 + sec(30)) == TrackResult::kAccept);
  }
}

TEST_CASE("an entry looked up in the current burst is not early-dropped") {
  Table t(config(16));
  for (uint32_t i = 0; i < 16; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  t.begin_burst();
  Direction d;
  Entry* held = t.lookup(udp_client(3), kT0, &d);
  REQUIRE(held);
  // 15 new flows take the other 15 entries, one eviction each; the 16th
  // finds only entries of this burst and is refused.
  for (uint32_t i = 0; i < 15; ++i) {
    REQUIRE(t.insert(udp_client(100 + i), invert(udp_client(100 + i)), datagram(), kT0));
  }
  InsertStatus st;
  CHECK(t.insert(udp_client(200), invert(udp_client(200)), datagram(), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kFull);
  CHECK(t.lookup(udp_client(3), kT0, &d) == held);
  CHECK(held->orig == udp_client(3));
}

TEST_CASE("expiry visits a bounded number of entries per call and frees the timed-out ones") {
  Table t(config(100));
  for (uint32_t i = 0; i < 50; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  assured(t, client(1), kT0);  // entry 50: lives for days
  const uint64_t later = kT0 + sec(31);
  Direction d;
  CHECK(t.lookup(udp_client(7), later, &d) == nullptr);  // gone before being swept
  CHECK(t.size() == 51);

  std::vector<net::FiveTuple> freed;
  CHECK(t.expire(later, 10, [&](const Entry& e) { freed.push_back(e.orig); }) == 10);
  CHECK(freed.size() == 10);
  CHECK(t.size() == 41);
  unsigned total = 10;
  for (int call = 0; call < 9; ++call) total += t.expire(later, 10);
  CHECK(total == 50);
  CHECK(t.size() == 1);
  CHECK(t.stats().expired.get() == 50);
  CHECK(t.lookup(client(1), later, &d) != nullptr);
  CHECK(t.expire(later, 1000) == 0);  // max_visit is capped at the entries ever used
}

namespace {

// Polls the sweep every tick from `now`, as a worker does, until the table
// is empty or 1 100 ticks (1.1 periods) have passed; returns the time it stopped.
uint64_t poll_sweep_until_empty(Table& t, uint64_t now) {
  t.sweep_due(now);
  for (int poll = 0; poll < 1100 && t.size() != 0; ++poll) {
    ++now;
    t.expire(now, t.sweep_due(now));
  }
  return now;
}

}  // namespace

TEST_CASE("the sweep is paced by time: the whole table once a second, whatever the call rate") {
  Table full(config(100));
  for (uint32_t i = 0; i < 100; ++i) REQUIRE(full.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  CHECK(full.sweep_due(kT0) == 0);  // the first call starts the clock
  CHECK(full.sweep_due(kT0 + 500) == 50);  // half a second: half the table
  CHECK(full.sweep_due(kT0 + 500) == 0);
  unsigned visited = 0;
  for (uint64_t ms = 501; ms <= 1500; ++ms) visited += full.sweep_due(kT0 + ms);  // polled every millisecond
  CHECK(visited == 100);
  CHECK(full.sweep_due(kT0 + sec(60)) == 100);  // a long pause owes one period, not sixty

  Table t(config(100));

  // Timed-out flows are freed within about a period of polling.
  for (uint32_t i = 0; i < 50; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0 + sec(60)));
  uint64_t now = kT0 + sec(91);
  now = poll_sweep_until_empty(t, now);
  CHECK(t.size() == 0);
  CHECK(now - (kT0 + sec(91)) <= sec(1) + 10);

  // A large table is visited at most kMaxSweepPerCall entries per call; the rest is carried.
  Table big(config(100'000));
  for (uint32_t i = 0; i < 2048; ++i) REQUIRE(big.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  big.sweep_due(kT0);
  CHECK(big.sweep_due(kT0 + sec(1)) == Table::kMaxSweepPerCall);
  CHECK(big.sweep_due(kT0 + sec(1)) == Table::kMaxSweepPerCall);
}

TEST_CASE("a redirect stub says which worker owns a reply tuple until it times out") {
  Table t(config(16));
  const auto reply = tcp("198.18.3.1", 8080, "198.18.0.1", 40000);
  Entry* stub = t.insert_redirect(reply, 2, status::kConfirmed, kT0, 60);
  REQUIRE(stub);
  Direction d;
  CHECK(t.lookup(reply, kT0, &d) == stub);
  CHECK(d == R);
  CHECK(stub->is_redirect());
  CHECK(stub->owner == 2);
  CHECK(t.lookup(invert(reply), kT0, &d) == nullptr);
  InsertStatus st;
  CHECK(t.insert(invert(reply), reply, syn(), kT0, &st) == nullptr);
  CHECK(st == InsertStatus::kClash);
  t.set_timeout(*stub, kT0 + sec(50), 60);
  CHECK(t.lookup(reply, kT0 + sec(100), &d) == stub);
  CHECK(t.lookup(reply, kT0 + sec(110), &d) == nullptr);
  CHECK(t.expire(kT0 + sec(110), 16) == 1);
  CHECK(t.size() == 0);
}

TEST_CASE("a stub for a tuple that already has one takes the newer owner; a flow holding the tuple clashes") {
  Table t(config(16));
  const auto reply = tcp("198.18.3.1", 8080, "198.18.0.1", 40000);
  Entry* stub = t.insert_redirect(reply, 2, status::kConfirmed, kT0, 60);
  REQUIRE(stub);
  InsertStatus st;
  CHECK(t.insert_redirect(reply, 1, status::kConfirmed | status::kAssured, kT0 + sec(50), 60, &st) == stub);
  CHECK(st == InsertStatus::kOk);
  CHECK(stub->owner == 1);
  CHECK(stub->has(status::kAssured));
  Direction d;
  CHECK(t.lookup(reply, kT0 + sec(100), &d) == stub);  // the timeout restarted too
  CHECK(t.size() == 1);
  CHECK(t.stats().clashed.get() == 0);

  const auto flow_reply = tcp("198.18.3.2", 8080, "198.18.0.1", 40000);
  REQUIRE(t.insert(invert(flow_reply), flow_reply, syn(), kT0));
  CHECK(t.insert_redirect(flow_reply, 1, status::kConfirmed, kT0, 60, &st) == nullptr);
  CHECK(st == InsertStatus::kClash);
  CHECK(t.stats().clashed.get() == 1);
}

TEST_CASE("flows with stubs elsewhere leave their reply tuples behind however they go, others do not") {
  Table t(config(64));
  auto dnat = [&](uint32_t n, bool redirected) {
    const auto c = client(n);
    auto reply = invert(c);
    reply.src = ip("198.18.3.1");
    reply.src_port = net::to_be16(8080);
    Entry* e = t.insert(c, reply, syn(), kT0);
    REQUIRE(e);
    if (redirected) e->status |= status::kRedirected;
    return e;
  };
  auto reply_of = [&](uint32_t n) {
    auto r = invert(client(n));
    r.src = ip("198.18.3.1");
    r.src_port = net::to_be16(8080);
    return r;
  };
  CHECK(t.departures().empty());

  // Killed: a RST answering the SYN.
  Entry* a = dnat(1, true);
  dnat(2, false);
  t.track(*a, R, rst(), kT0);
  REQUIRE(t.departures().size() == 1);
  CHECK(t.departures()[0] == reply_of(1));
  t.clear_departures();
  t.begin_burst();

  // Deleted by filter (conntrack -D), and expired by the sweep.
  dnat(3, true);
  FlowFilter f;
  f.orig_sport = client(3).src_port;
  CHECK(t.delete_matching(f, 0, 64, kT0).matched == 1);
  dnat(4, true);
  t.expire(kT0 + sec(3600), 64);  // 4 and the unmarked 2 time out
  REQUIRE(t.departures().size() == 2);
  CHECK(t.departures()[0] == reply_of(3));
  CHECK(t.departures()[1] == reply_of(4));
  t.clear_departures();

  // A stub itself leaves nothing, and flush() forgets what was pending.
  Entry* stub = t.insert_redirect(reply_of(5), 1, status::kConfirmed, kT0, 60);
  REQUIRE(stub);
  t.remove(*stub);
  CHECK(t.departures().empty());
  Entry* b = dnat(6, true);
  t.kill(*b);
  CHECK(t.departures().size() == 1);
  t.flush();
  CHECK(t.departures().empty());
  CHECK(t.stats().departures_lost.get() == 0);
}

TEST_CASE("an early-dropped flow with stubs elsewhere leaves its reply tuple; past the bound they are counted") {
  Table t(config(64));
  uint32_t n = 0;
  while (t.size() < t.capacity()) {
    Entry* e = t.insert(client(n), invert(client(n)), syn(), kT0);
    REQUIRE(e);
    e->status |= status::kRedirected;
    ++n;
  }
  t.begin_burst();  // the flows of the last burst may go now
  REQUIRE(t.insert(client(n), invert(client(n)), syn(), kT0));
  CHECK(t.stats().early_dropped.get() >= 1);
  CHECK(t.departures().size() == t.stats().early_dropped.get());
  // More departures than kMaxDepartures between two clears: counted, not kept.
  Table big(config(8192));
  for (uint32_t i = 0; i < Table::kMaxDepartures + 3; ++i) {
    Entry* e = big.insert(client(i), invert(client(i)), syn(), kT0);
    REQUIRE(e);
    e->status |= status::kRedirected;
    big.kill(*e);
    if (i % 32 == 31) big.begin_burst();
  }
  CHECK(big.departures().size() == Table::kMaxDepartures);
  CHECK(big.stats().departures_lost.get() == 3);
}

TEST_CASE("deletes by filter select flows as conntrack -D does for kube-proxy") {
  Table t(config(64));
  const auto vip = ip("198.18.2.10");
  auto dnat_flow = [&](uint32_t n, const char* backend, uint8_t proto) {
    auto c = client(n, 53);
    c.proto = proto;
    c.dst = vip;
    auto reply = invert(c);
    reply.src = ip(backend);
    return t.insert(c, reply, proto == 6 ? syn() : datagram(), kT0);
  };
  REQUIRE(dnat_flow(1, "198.18.3.1", 17));
  REQUIRE(dnat_flow(2, "198.18.3.2", 17));
  REQUIRE(dnat_flow(3, "198.18.3.1", 6));
  REQUIRE(t.insert(udp_client(4), invert(udp_client(4)), datagram(), kT0));
  REQUIRE(t.insert_redirect(udp("198.18.3.1", 53, "198.18.0.9", 1), 1, 0, kT0, 60));

  // conntrack -D -p udp --orig-dst VIP --dst-nat 198.18.3.1
  FlowFilter stale_endpoint;
  stale_endpoint.proto = 17;
  stale_endpoint.orig_dst = vip;
  stale_endpoint.dst_nat = ip("198.18.3.1");
  WalkProgress p = t.delete_matching(stale_endpoint, 0, 1000, kT0);
  CHECK(p.done);
  CHECK(p.matched == 1);
  CHECK(t.size() == 4);

  // conntrack -D -p udp --orig-dst VIP, walked 8 slots at a time.
  FlowFilter service;
  service.proto = 17;
  service.orig_dst = vip;
  uint32_t cursor = 0, deleted = 0;
  for (;;) {
    p = t.delete_matching(service, cursor, 8, kT0);
    deleted += p.matched;
    cursor = p.next_cursor;
    if (p.done) break;
  }
  CHECK(deleted == 1);
  CHECK(t.size() == 3);

  // Stubs are deleted only when asked for.
  FlowFilter stubs;
  stubs.reply_src = ip("198.18.3.1");
  CHECK(t.delete_matching(stubs, 0, 1000, kT0).matched == 1);  // the TCP flow
  stubs.redirects = true;
  CHECK(t.delete_matching(stubs, 0, 1000, kT0).matched == 1);  // the stub
  CHECK(t.size() == 1);
}

TEST_CASE("walking the table lists every live flow once, for conntrack -L") {
  Table t(config(40));
  for (uint32_t i = 0; i < 25; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  Direction d;
  t.remove(*t.lookup(udp_client(5), kT0, &d));
  std::set<uint32_t> seen_src_ports;
  uint32_t cursor = 0;
  WalkProgress p;
  do {
    p = t.for_each(cursor, 7, kT0, [&](const Entry& e) {
      seen_src_ports.insert(net::to_host(e.orig.src_port));
    });
    cursor = p.next_cursor;
  } while (!p.done);
  CHECK(seen_src_ports.size() == 24);
  CHECK(seen_src_ports.count(10005) == 0);

  // A table sized for 100 000 flows holding three is walked in one page of
  // seven slots: the walk stops at the entries ever used.
  Table big(config(100'000));
  for (uint32_t i = 0; i < 3; ++i) REQUIRE(big.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  p = big.for_each(0, 7, kT0, [](const Entry&) {});
  CHECK(p.done);
  CHECK(p.matched == 3);
  CHECK(big.delete_matching(FlowFilter{}, 0, 7, kT0).done);
}

TEST_CASE("flush empties the table and every entry can be used again") {
  Table t(config(8));
  for (uint32_t i = 0; i < 8; ++i) assured(t, client(i), kT0);
  t.flush();
  CHECK(t.size() == 0);
  Direction d;
  CHECK(t.lookup(client(0), kT0, &d) == nullptr);
  for (uint32_t i = 0; i < 8; ++i) CHECK(t.insert(client(50 + i), invert(client(50 + i)), syn(), kT0));
  CHECK(t.size() == 8);
}

TEST_CASE("a killed entry stays readable for the rest of the burst and is freed at the next") {
  Table t(config(4));
  const auto c = client(1);
  Entry* e = t.insert(c, invert(c), syn(), kT0);
  t.kill(*e);
  Direction d;
  CHECK(t.lookup(c, kT0, &d) == nullptr);
  CHECK(e->orig == c);
  CHECK(t.size() == 1);
  t.begin_burst();
  CHECK(t.size() == 0);
  CHECK(e->kind == EntryKind::kFree);
}

TEST_CASE("conntrack -L prints a flow as conntrack-tools does") {
  Table t(config(4, {}, true));
  const auto c = tcp("198.18.0.1", 40000, "198.18.1.1", 80);
  Entry* e = t.insert(c, invert(c), syn(), kT0);
  CHECK(format_conntrack(t.info(*e, kT0)) ==
        "tcp      6 120 SYN_SENT src=198.18.0.1 dst=198.18.1.1 sport=40000 dport=80 "
        "packets=1 bytes=40 [UNREPLIED] src=198.18.1.1 dst=198.18.0.1 sport=80 dport=40000 "
        "packets=0 bytes=0 mark=0 use=1");
  t.track(*e, R, synack(), kT0);
  t.track(*e, O, ack(), kT0);
  e->mark = 7;
  CHECK(format_conntrack(t.info(*e, kT0 + sec(1))) ==
        "tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.18.1.1 sport=40000 dport=80 "
        "packets=2 bytes=80 src=198.18.1.1 dst=198.18.0.1 sport=80 dport=40000 "
        "packets=1 bytes=40 [ASSURED] mark=7 use=1");
}

TEST_CASE("without accounting conntrack -L prints no counters, as the kernel's without nf_conntrack_acct") {
  Table t(config(4));
  const auto c = tcp("198.18.0.1", 40000, "198.18.1.1", 80);
  Entry* e = t.insert(c, invert(c), syn(), kT0);
  CHECK(format_conntrack(t.info(*e, kT0)) ==
        "tcp      6 120 SYN_SENT src=198.18.0.1 dst=198.18.1.1 sport=40000 dport=80 "
        "[UNREPLIED] src=198.18.1.1 dst=198.18.0.1 sport=80 dport=40000 mark=0 use=1");
}

TEST_CASE("an IPv4 flow is found, tracked and translated in both directions from the entry's first line") {
  // Flows with DNAT, SNAT, both and neither; then everything past line 0
  // is overwritten with junk: bulk lookups of both tuples, the established
  // ACK's tracking and both translated endpoints must not notice.
  Table t(config(64));
  std::vector<std::pair<net::FiveTuple, net::FiveTuple>> flows;
  for (uint16_t i = 0; i < 16; ++i) {
    const auto orig = tcp("198.18.0.1", static_cast<uint16_t>(40000 + i), "198.18.100.1", 80);
    auto reply = invert(orig);
    if (i & 1) {  // DNAT to a backend
      reply.src = net::IpAddr::from_v4(net::to_be32(0xc6120a00u + i));
      reply.src_port = net::to_be16(8080);
    }
    if (i & 2) {  // SNAT from the router
      reply.dst = net::IpAddr::from_v4(net::to_be32(0xc6130001u));
      reply.dst_port = net::to_be16(static_cast<uint16_t>(20000 + i));
    }
    Entry* e = t.insert(orig, reply, syn(), kT0);
    REQUIRE(e);
    flows.emplace_back(orig, reply);
    t.track(*e, R, synack(), kT0);
    t.track(*e, O, ack(), kT0);
    REQUIRE(e->tcp_state() == TcpState::kEstablished);
  }
  std::vector<Entry*> entries;
  for (const auto& [orig, reply] : flows) {
    Direction d;
    entries.push_back(t.lookup(orig, kT0, &d));
    std::memset(reinterpret_cast<uint8_t*>(entries.back()) + 64, 0xa5, 64);
  }
  std::vector<net::FiveTuple> keys;
  for (const auto& [orig, reply] : flows) {
    keys.push_back(orig);
    keys.push_back(reply);
  }
  Entry* out[32];
  Direction dir[32];
  t.begin_burst();
  t.lookup_bulk(keys.data(), static_cast<unsigned>(keys.size()), kT0 + sec(1), out, dir);
  for (size_t i = 0; i < flows.size(); ++i) {
    INFO("flow " << i);
    const auto& [orig, reply] = flows[i];
    CHECK(out[2 * i] == entries[i]);
    CHECK(dir[2 * i] == O);
    CHECK(out[2 * i + 1] == entries[i]);
    CHECK(dir[2 * i + 1] == R);
    Entry& e = *entries[i];
    CHECK(t.track(e, O, ack(), kT0 + sec(1)) == TrackResult::kAccept);
    CHECK(t.track(e, R, ack(), kT0 + sec(1)) == TrackResult::kAccept);
    CHECK(e.has(status::kAssured));
    const Endpoint4 to_o = translated_destination4(e, O), from_o = translated_source4(e, O);
    const Endpoint4 to_r = translated_destination4(e, R), from_r = translated_source4(e, R);
    CHECK(to_o.addr == reply.src.v4());
    CHECK(to_o.port == reply.src_port);
    CHECK(from_o.addr == reply.dst.v4());
    CHECK(from_o.port == reply.dst_port);
    CHECK(to_r.addr == orig.src.v4());
    CHECK(from_r.addr == orig.dst.v4());
  }
}

TEST_CASE("an IPv6 flow is found by both tuples, its reply addresses compared at full width") {
  Table t(config(16));
  auto v6 = [](uint8_t last) {
    net::IpAddr a;
    a.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last};
    return a;
  };
  net::FiveTuple orig;
  orig.src = v6(1);
  orig.dst = v6(2);
  orig.src_port = net::to_be16(40000);
  orig.dst_port = net::to_be16(80);
  orig.proto = 6;
  orig.family = net::Family::kIpv6;
  net::FiveTuple reply = invert(orig);
  reply.src = v6(3);  // DNAT
  Entry* e = t.insert(orig, reply, syn(), kT0);
  REQUIRE(e);
  Direction d;
  CHECK(t.lookup(orig, kT0, &d) == e);
  CHECK(d == O);
  CHECK(t.lookup(reply, kT0, &d) == e);
  CHECK(d == R);
  CHECK(translated_destination(*e, O).addr == v6(3));
  // A reply key differing only beyond the first four address bytes is
  // another flow: IPv6 keys never take the IPv4 shortcut.
  net::FiveTuple other = reply;
  other.src.bytes[15] = 4;
  CHECK(t.lookup(other, kT0, &d) == nullptr);
  other = reply;
  other.dst.bytes[8] = 9;
  CHECK(t.lookup(other, kT0, &d) == nullptr);
  // The same on the original side, which compares the whole tuple.
  other = orig;
  other.src.bytes[15] = 5;
  CHECK(t.lookup(other, kT0, &d) == nullptr);
  other = orig;
  other.dst.bytes[4] = 1;
  CHECK(t.lookup(other, kT0, &d) == nullptr);
  Entry* out[2];
  Direction dirs[2];
  const net::FiveTuple keys[2] = {reply, orig};
  t.lookup_bulk(keys, 2, kT0, out, dirs);
  CHECK(out[0] == e);
  CHECK(dirs[0] == R);
  CHECK(out[1] == e);
  CHECK(dirs[1] == O);
}

TEST_CASE("the sweep covers the entries ever used, not the capacity") {
  Table t(config(100'000));
  CHECK(t.sweep_due(kT0) == 0);
  CHECK(t.sweep_due(kT0 + sec(1)) == 0);  // nothing was ever used: nothing to visit
  for (uint32_t i = 0; i < 10; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), kT0));
  t.sweep_due(kT0 + sec(1));
  CHECK(t.sweep_due(kT0 + sec(2)) == 10);  // ten entries a second, not 100 000

  // Timed out, they are all freed by one period of polling.
  uint64_t now = kT0 + sec(100);
  now = poll_sweep_until_empty(t, now);
  CHECK(t.size() == 0);
  CHECK(t.stats().expired.get() == 10);

  // Freed entries are taken again before new ones: the mark stays at ten.
  for (uint32_t i = 100; i < 110; ++i) REQUIRE(t.insert(udp_client(i), invert(udp_client(i)), datagram(), now));
  t.sweep_due(now + sec(1));
  CHECK(t.sweep_due(now + sec(2)) == 10);
  // A flow is found and its timeout respected by the sweep wherever the cursor was.
  CHECK(t.expire(now + sec(2), 1000) == 0);
  CHECK(t.size() == 10);
  Direction d;
  CHECK(t.lookup(udp_client(105), now + sec(2), &d) != nullptr);

  t.flush();
  t.sweep_due(now + sec(3));
  CHECK(t.sweep_due(now + sec(4)) == 0);  // a flushed table has nothing to sweep
}
