// Number <-> name tables for iptables' extensions (see names.hpp).
#include "names.hpp"

#include <netdb.h>

#include <cstdio>
#include <unordered_map>

namespace dpgate::rules::names {

const IcmpName kIcmpNames[] = {
    {"any", 255, 0, 255},
    {"echo-reply", 0, 0, 255},
    {"pong", 0, 0, 255},
    {"destination-unreachable", 3, 0, 255},
    {"network-unreachable", 3, 0, 0},
    {"host-unreachable", 3, 1, 1},
    {"protocol-unreachable", 3, 2, 2},
    {"port-unreachable", 3, 3, 3},
    {"fragmentation-needed", 3, 4, 4},
    {"source-route-failed", 3, 5, 5},
    {"network-unknown", 3, 6, 6},
    {"host-unknown", 3, 7, 7},
    {"network-prohibited", 3, 9, 9},
    {"host-prohibited", 3, 10, 10},
    {"TOS-network-unreachable", 3, 11, 11},
    {"TOS-host-unreachable", 3, 12, 12},
    {"communication-prohibited", 3, 13, 13},
    {"host-precedence-violation", 3, 14, 14},
    {"precedence-cutoff", 3, 15, 15},
    {"source-quench", 4, 0, 255},
    {"redirect", 5, 0, 255},
    {"network-redirect", 5, 0, 0},
    {"host-redirect", 5, 1, 1},
    {"TOS-network-redirect", 5, 2, 2},
    {"TOS-host-redirect", 5, 3, 3},
    {"echo-request", 8, 0, 255},
    {"ping", 8, 0, 255},
    {"router-advertisement", 9, 0, 255},
    {"router-solicitation", 10, 0, 255},
    {"time-exceeded", 11, 0, 255},
    {"ttl-exceeded", 11, 0, 255},
    {"ttl-zero-during-transit", 11, 0, 0},
    {"ttl-zero-during-reassembly", 11, 1, 1},
    {"parameter-problem", 12, 0, 255},
    {"ip-header-bad", 12, 0, 0},
    {"required-option-missing", 12, 1, 1},
    {"timestamp-request", 13, 0, 255},
    {"timestamp-reply", 14, 0, 255},
    {"address-mask-request", 17, 0, 255},
    {"address-mask-reply", 18, 0, 255},
};
const size_t kIcmpNameCount = sizeof(kIcmpNames) / sizeof(kIcmpNames[0]);

const Flag kTcpFlags[] = {
    {"FIN", 0x01}, {"SYN", 0x02}, {"RST", 0x04}, {"PSH", 0x08},
    {"ACK", 0x10}, {"URG", 0x20}, {"ALL", 0x3f}, {"NONE", 0},
};
const size_t kTcpFlagCount = sizeof(kTcpFlags) / sizeof(kTcpFlags[0]);

const Flag kCtStates[] = {
    {"INVALID", ct_state::kInvalid}, {"NEW", ct_state::kNew},
    {"RELATED", ct_state::kRelated}, {"ESTABLISHED", ct_state::kEstablished},
    {"UNTRACKED", ct_state::kUntracked}, {"SNAT", ct_state::kSnat},
    {"DNAT", ct_state::kDnat},
};
const size_t kCtStateCount = sizeof(kCtStates) / sizeof(kCtStates[0]);

const Flag kCtStatuses[] = {
    {"EXPECTED", ct_status::kExpected},
    {"SEEN_REPLY", ct_status::kSeenReply},
    {"ASSURED", ct_status::kAssured},
    {"CONFIRMED", ct_status::kConfirmed},
};
const size_t kCtStatusCount = sizeof(kCtStatuses) / sizeof(kCtStatuses[0]);

const Flag kAddrTypes[] = {
    {"UNSPEC", addr_type::kUnspec},       {"UNICAST", addr_type::kUnicast},
    {"LOCAL", addr_type::kLocal},         {"BROADCAST", addr_type::kBroadcast},
    {"ANYCAST", addr_type::kAnycast},     {"MULTICAST", addr_type::kMulticast},
    {"BLACKHOLE", addr_type::kBlackhole}, {"UNREACHABLE", addr_type::kUnreachable},
    {"PROHIBIT", addr_type::kProhibit},   {"THROW", addr_type::kThrow},
    {"NAT", addr_type::kNat},             {"XRESOLVE", addr_type::kXresolve},
};
const size_t kAddrTypeCount = sizeof(kAddrTypes) / sizeof(kAddrTypes[0]);

const RejectName kRejectNames[] = {
    {"icmp-net-unreachable", "net-unreach", RejectWith::kNetUnreachable},
    {"icmp-host-unreachable", "host-unreach", RejectWith::kHostUnreachable},
    {"icmp-port-unreachable", "port-unreach", RejectWith::kPortUnreachable},
    {"icmp-proto-unreachable", "proto-unreach", RejectWith::kProtoUnreachable},
    {"icmp-net-prohibited", "net-prohib", RejectWith::kNetProhibited},
    {"icmp-host-prohibited", "host-prohib", RejectWith::kHostProhibited},
    {"tcp-reset", "tcp-rst", RejectWith::kTcpReset},
    {"icmp-admin-prohibited", "admin-prohib", RejectWith::kAdminProhibited},
};
const size_t kRejectNameCount = sizeof(kRejectNames) / sizeof(kRejectNames[0]);

const char* reject_name(RejectWith with) {
  for (const auto& r : kRejectNames) {
    if (r.with == with) return r.name;
  }
  return "icmp-port-unreachable";
}

namespace {

// The answers of this thread's live LookupCache (depth > 0), by query.
struct Remembered {
  unsigned depth = 0;
  std::unordered_map<std::string, std::optional<uint8_t>> protocols;
  std::unordered_map<uint8_t, std::string> protocol_names;
  std::unordered_map<std::string, std::optional<uint16_t>> services;  // "name/proto"
};
thread_local Remembered remembered;

// fn() once per key while a cache is alive, every time otherwise.
template <typename Map, typename Key, typename Fn>
typename Map::mapped_type recall(Map& map, const Key& key, Fn fn) {
  if (remembered.depth == 0) return fn();
  auto it = map.find(key);
  if (it == map.end()) it = map.emplace(key, fn()).first;
  return it->second;
}

}  // namespace

LookupCache::LookupCache() { ++remembered.depth; }

LookupCache::~LookupCache() {
  if (--remembered.depth == 0) remembered = Remembered{};
}

std::optional<uint8_t> protocol_number(std::string_view name) {
  std::string s(name);
  return recall(remembered.protocols, s, [&]() -> std::optional<uint8_t> {
    if (const protoent* p = getprotobyname(s.c_str())) return uint8_t(p->p_proto);
    return std::nullopt;
  });
}

std::string protocol_name(uint8_t proto) {
  return recall(remembered.protocol_names, proto, [&]() -> std::string {
    if (const protoent* p = getprotobynumber(proto)) return p->p_name;
    return std::to_string(proto);
  });
}

std::optional<uint16_t> service_port(std::string_view name, std::string_view proto) {
  std::string s(name), pr(proto);
  return recall(remembered.services, s + "/" + pr, [&]() -> std::optional<uint16_t> {
    const servent* e = getservbyname(s.c_str(), pr.empty() ? nullptr : pr.c_str());
    if (e == nullptr) return std::nullopt;
    return uint16_t(ntohs(uint16_t(e->s_port)));
  });
}

std::string ipv4_to_string(uint32_t addr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff,
                (addr >> 8) & 0xff, addr & 0xff);
  return buf;
}

int mask_to_cidr(uint32_t mask) {
  int bits = 0;
  while (bits < 32 && (mask & (0x80000000u >> bits))) ++bits;
  return cidr_to_mask(bits) == mask ? bits : -1;
}

}  // namespace dpgate::rules::names
