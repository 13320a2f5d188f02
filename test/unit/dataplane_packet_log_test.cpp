// LOG records formatted as the kernel's nf_log_ipv4 prints them. The expected
// lines are the Linux 6.18 kernel's own (dmesg, trailing space included) for
// the same packets crossing a namespace router with the same -j LOG rules:
// lan0 02:00:00:00:01:01 <-> client 02:00:00:00:01:02 198.18.1.2,
// wan0 02:00:00:00:02:01 <-> server 02:00:00:00:02:02 198.18.2.2.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "dpgate/dataplane/packet_log.hpp"

// The packets below are designated initializers over defaults; g++ 12 warns
// about every member left to its default member initializer.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace dpgate;
using dataplane::LogRecord;
using Bytes = std::vector<uint8_t>;

namespace {

const Bytes kClient{198, 18, 1, 2}, kServer{198, 18, 2, 2};
const Bytes kLanMac{0x02, 0, 0, 0, 0x01, 0x01}, kClientMac{0x02, 0, 0, 0, 0x01, 0x02};
const Bytes kWanMac{0x02, 0, 0, 0, 0x02, 0x01}, kServerMac{0x02, 0, 0, 0, 0x02, 0x02};

void put16(Bytes& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, uint16_t(v >> 16));
  put16(b, uint16_t(v));
}
Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Ip {
  uint8_t proto = 6;
  uint8_t tos = 0;
  uint16_t id = 54321;
  uint16_t frag = 0x4000;  // DF
  uint8_t ttl = 64;
  Bytes src = kClient, dst = kServer;
  Bytes options;
};
// An IPv4 datagram; checksums are left 0 (LOG prints none).
Bytes ip(const Ip& h, const Bytes& payload) {
  Bytes b{uint8_t(0x40 | (5 + h.options.size() / 4)), h.tos};
  put16(b, uint16_t(20 + h.options.size() + payload.size()));
  put16(b, h.id);
  put16(b, h.frag);
  b.push_back(h.ttl);
  b.push_back(h.proto);
  put16(b, 0);
  b = cat(cat(b, h.src), h.dst);
  return cat(cat(b, h.options), payload);
}

struct Tcp {
  uint16_t sport = 40000, dport = 80;
  uint8_t flags = 0x02;
  uint32_t seq = 1000, ack = 0;
  uint16_t window = 64240, urg = 0;
  uint8_t reserved = 0;  // the 4 bits after the data offset
  Bytes options;
};
Bytes tcp(const Tcp& t) {
  Bytes b;
  put16(b, t.sport);
  put16(b, t.dport);
  put32(b, t.seq);
  put32(b, t.ack);
  b.push_back(uint8_t((5 + t.options.size() / 4) << 4 | t.reserved));
  b.push_back(t.flags);
  put16(b, t.window);
  put16(b, 0);
  put16(b, t.urg);
  return cat(b, t.options);
}

Bytes udp(uint16_t sport, uint16_t dport, const std::string& data) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, uint16_t(8 + data.size()));
  put16(b, 0);
  return cat(b, Bytes(data.begin(), data.end()));
}

Bytes icmp(uint8_t type, uint8_t code, uint32_t rest, const Bytes& data = {}) {
  Bytes b{type, code, 0, 0};
  put32(b, rest);
  return cat(b, data);
}

struct Logged {
  const char* prefix = "";
  uint8_t level = 4;
  uint8_t flags = 0;
  rules::Hook hook = rules::Hook::kForward;
  const char* in = "lan0";
  const char* out = "wan0";
  uint32_t mark = 0;
  Bytes mac = cat(cat(kLanMac, kClientMac), Bytes{0x08, 0x00});
};

// What the control thread prints for `datagram` passing the LOG rule.
std::string logged(const Bytes& datagram, const Logged& l = {}) {
  rules::LogTarget t;
  t.prefix = l.prefix;
  t.has_prefix = !t.prefix.empty();
  t.level = l.level;
  t.flags = l.flags;
  const Bytes frame = cat(l.mac, datagram);
  const uint16_t l2 = uint16_t(l.mac.size());
  LogRecord rec;
  const auto n = uint16_t(std::min<size_t>(datagram.size(), LogRecord::kIpBytes));
  dataplane::make_log_record(rec, t, l.hook, l.in, l.out, l.mark, frame.data(), l2, frame.data() + l2, n,
                             uint16_t(datagram.size()));
  CHECK(rec.level == l.level);
  return dataplane::format_log_record(rec);
}

const std::string kMacLan = "MAC=02:00:00:00:01:01:02:00:00:00:01:02:08:00 ";
const std::string kMacWan = "MAC=02:00:00:00:02:01:02:00:00:00:02:02:08:00 ";

}  // namespace

TEST_CASE("a forwarded TCP SYN is logged as the kernel logs it, TTL already decremented") {
  CHECK(logged(ip({}, tcp({})), {.prefix = "web: "}) ==
        "web: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=40000 DPT=80 "
            "WINDOW=64240 RES=0x00 SYN URGP=0 ");
}

TEST_CASE("--log-tcp-sequence adds SEQ and ACK; the level travels with the record") {
  CHECK(logged(ip({}, tcp({.sport = 40001, .dport = 81, .flags = 0x18, .seq = 123456789, .ack = 987654321, .window = 502})),
               {.prefix = "seq: ", .level = 6, .flags = dataplane::log_flag::kTcpSequence}) ==
        "seq: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=40001 DPT=81 "
            "SEQ=123456789 ACK=987654321 WINDOW=502 RES=0x00 ACK PSH URGP=0 ");
}

TEST_CASE("--log-tcp-options and --log-ip-options print the option bytes in hex") {
  const Bytes tcp_options{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7};
  // A record-route option as the kernel logged it (it had already added its address).
  const Bytes ip_options{7, 7, 8, 0xc6, 0x12, 1, 1, 0};
  CHECK(logged(ip({.options = ip_options}, tcp({.sport = 40002, .dport = 82, .options = tcp_options})),
               {.prefix = "opt: ", .flags = dataplane::log_flag::kTcpOptions | dataplane::log_flag::kIpOptions}) ==
        "opt: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=68 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF OPT (070708C612010100) "
            "PROTO=TCP SPT=40002 DPT=82 WINDOW=64240 RES=0x00 SYN URGP=0 OPT (020405B40402080A000000010000000001030307) ");
}

TEST_CASE("--log-macdecode splits the MAC header; every TCP flag and the reserved bits are named") {
  CHECK(logged(ip({}, tcp({.sport = 40003, .dport = 83, .flags = 0xf1, .urg = 5, .reserved = 0xf})),
               {.prefix = "mac: ", .flags = dataplane::log_flag::kMacDecode}) ==
        "mac: IN=lan0 OUT=wan0 MACSRC=02:00:00:00:01:02 MACDST=02:00:00:00:01:01 MACPROTO=0800 "
        "SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=40003 DPT=83 "
        "WINDOW=64240 RES=0x38 AE CWR ECE URG ACK FIN URGP=5 ");
}

TEST_CASE("a 29-character prefix runs into IN=; TOS and precedence are split") {
  CHECK(logged(ip({.tos = 0xb8}, tcp({.sport = 40004, .dport = 84, .flags = 0x04})),
               {.prefix = "a-prefix-that-is-exactly-29ch"}) ==
        "a-prefix-that-is-exactly-29chIN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x18 PREC=0xA0 TTL=63 ID=54321 DF PROTO=TCP SPT=40004 DPT=84 "
            "WINDOW=64240 RES=0x00 RST URGP=0 ");
}

TEST_CASE("UDP in PREROUTING (no OUT, TTL as received), FORWARD and POSTROUTING") {
  const Bytes d = ip({.proto = 17}, udp(5353, 7777, "hello"));
  const std::string rest = "SRC=198.18.1.2 DST=198.18.2.2 LEN=33 TOS=0x00 PREC=0x00 TTL=%d ID=54321 DF PROTO=UDP "
                           "SPT=5353 DPT=7777 LEN=13 ";
  auto with_ttl = [&](int ttl) { return rest.substr(0, rest.find("%d")) + std::to_string(ttl) + rest.substr(rest.find("%d") + 2); };
  CHECK(logged(d, {.prefix = "pre: ", .hook = rules::Hook::kPrerouting, .out = ""}) ==
        "pre: IN=lan0 OUT= " + kMacLan + with_ttl(64));
  CHECK(logged(d, {.prefix = "udp: "}) == "udp: IN=lan0 OUT=wan0 " + kMacLan + with_ttl(63));
  CHECK(logged(d, {.prefix = "post: ", .hook = rules::Hook::kPostrouting}) ==
        "post: IN=lan0 OUT=wan0 " + kMacLan + with_ttl(63));
}

TEST_CASE("fragments: the first shows MF and its ports, a later one FRAG and no ports") {
  CHECK(logged(ip({.proto = 17, .frag = 0x2000}, udp(5353, 7777, std::string(40, 'x'))), {.prefix = "udp: "}) ==
        "udp: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=68 TOS=0x00 PREC=0x00 TTL=63 ID=54321 MF PROTO=UDP SPT=5353 DPT=7777 "
            "LEN=48 ");
  CHECK(logged(ip({.proto = 17, .id = 777, .frag = 3}, Bytes(16, 'y')), {.prefix = "udp: "}) ==
        "udp: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=36 TOS=0x00 PREC=0x00 TTL=63 ID=777 FRAG:3 PROTO=UDP ");
}

TEST_CASE("ICMP echo shows ID and SEQ; in INPUT there is no OUT and no TTL change") {
  CHECK(logged(ip({.proto = 1}, icmp(8, 0, 0x12340007, {'a', 'b', 'c', 'd'})), {.prefix = "icmp: "}) ==
        "icmp: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=32 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=ICMP TYPE=8 CODE=0 "
            "ID=4660 SEQ=7 ");
  CHECK(logged(ip({.proto = 1, .id = 61601, .dst = {198, 18, 1, 1}}, icmp(8, 0, 17347u << 16 | 1, Bytes(56, 0))),
               {.prefix = "in: ", .hook = rules::Hook::kInput, .out = ""}) ==
        "in: IN=lan0 OUT= " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.1.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=61601 DF PROTO=ICMP TYPE=8 CODE=0 "
            "ID=17347 SEQ=1 ");
}

TEST_CASE("an ICMP error shows the quoted packet in brackets, and MTU for fragmentation needed") {
  // The server's port unreachable about the forwarded UDP datagram (TTL 63 in the quote).
  const Bytes quoted = ip({.proto = 17, .ttl = 63}, udp(5353, 7777, "hello"));
  const Bytes error = ip({.proto = 1, .tos = 0xc0, .id = 18106, .frag = 0, .src = kServer, .dst = kClient},
                         icmp(3, 3, 0, quoted));
  CHECK(logged(error, {.prefix = "icmp: ", .in = "wan0", .out = "lan0", .mac = cat(cat(kWanMac, kServerMac), {8, 0})}) ==
        "icmp: IN=wan0 OUT=lan0 " + kMacWan +
            "SRC=198.18.2.2 DST=198.18.1.2 LEN=61 TOS=0x00 PREC=0xC0 TTL=63 ID=18106 PROTO=ICMP TYPE=3 CODE=3 "
            "[SRC=198.18.1.2 DST=198.18.2.2 LEN=33 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=UDP SPT=5353 DPT=7777 "
            "LEN=13 ] ");

  const Bytes quoted_udp = ip({.proto = 17}, udp(1, 2, ""));
  CHECK(logged(ip({.proto = 1}, icmp(3, 4, 1400, quoted_udp)), {.prefix = "icmp: "}) ==
        "icmp: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=56 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=ICMP TYPE=3 CODE=4 "
            "[SRC=198.18.1.2 DST=198.18.2.2 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=UDP SPT=1 DPT=2 LEN=8 ] "
            "MTU=1400 ");
}

TEST_CASE("headers cut short are INCOMPLETE with the bytes there are, as the kernel says") {
  // A quote of an IP header and 8 bytes: too short for a TCP header.
  const Bytes syn_ack = ip({}, tcp({.sport = 80, .dport = 40000, .flags = 0x12}));
  const Bytes quoted_tcp(syn_ack.begin(), syn_ack.begin() + 28);
  CHECK(logged(ip({.proto = 1}, icmp(3, 3, 0, quoted_tcp)), {.prefix = "icmp: "}) ==
        "icmp: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=56 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=ICMP TYPE=3 CODE=3 "
            "[SRC=198.18.1.2 DST=198.18.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=TCP "
            "INCOMPLETE [8 bytes] ] ");
  CHECK(logged(ip({}, {0, 0x50, 0, 0x50}), {.prefix = "web: "}) ==
        "web: IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=24 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP "
            "INCOMPLETE [4 bytes] ");
}

TEST_CASE("another protocol is a number; no prefix leaves IN= first") {
  CHECK(logged(ip({.proto = 47}, {0, 0, 8, 0})) ==
        "IN=lan0 OUT=wan0 " + kMacLan +
            "SRC=198.18.1.2 DST=198.18.2.2 LEN=24 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=47 ");
}

// Below: what nf_log_syslog.c prints where no oracle packet was sent.
TEST_CASE("a packet mark is printed last, in hex") {
  CHECK(logged(ip({}, tcp({})), {.prefix = "m: ", .mark = 0x4000}).ends_with("SYN URGP=0 MARK=0x4000 "));
}

TEST_CASE("ESP and AH show their SPI") {
  Bytes spi;
  put32(spi, 0xdeadbeef);
  CHECK(logged(ip({.proto = 50}, cat(spi, Bytes(8, 0)))).ends_with("DF PROTO=ESP SPI=0xdeadbeef "));
  CHECK(logged(ip({.proto = 51}, cat(cat(Bytes{4, 4, 0, 0}, spi), Bytes(8, 0)))).ends_with("DF PROTO=AH SPI=0xdeadbeef "));
}

TEST_CASE("a VLAN-tagged frame logs the inner EtherType; --log-macdecode names the VLAN") {
  const Bytes tagged = cat(cat(kLanMac, kClientMac), {0x81, 0x00, 0x00, 0x07, 0x08, 0x00});
  CHECK(logged(ip({}, tcp({})), {.mac = tagged}).find(kMacLan) != std::string::npos);
  CHECK(logged(ip({}, tcp({})), {.flags = dataplane::log_flag::kMacDecode, .mac = tagged})
            .find("MACSRC=02:00:00:00:01:02 MACDST=02:00:00:00:01:01 VPROTO=8100 VID=7 MACPROTO=0800 ") !=
        std::string::npos);
}

TEST_CASE("a record holds a prefix of at most 29 characters and the interface names") {
  rules::LogTarget t;
  t.prefix = std::string(40, 'p');
  const Bytes frame = cat(cat(kLanMac, kClientMac), cat({8, 0}, ip({}, tcp({}))));
  LogRecord rec;
  dataplane::make_log_record(rec, t, rules::Hook::kForward, "lan", "wan", 0, frame.data(), 14, frame.data() + 14, 40, 40);
  CHECK(std::string(rec.prefix) == std::string(29, 'p'));
  CHECK(std::string(rec.in) == "lan");
  CHECK(std::string(rec.out) == "wan");
  CHECK(rec.copied == 40);
  CHECK(rec.ip_len == 40);
}
