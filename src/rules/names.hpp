// Names iptables uses for numbers (icmp types, tcp flags, conntrack states,
// address types, reject types), shared by the parser and the printer.
// Internal to src/rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dpgate/rules/ruleset.hpp"

namespace dpgate::rules::names {

struct IcmpName {
  const char* name;
  uint8_t type, code_lo, code_hi;
};
// libipt_icmp's table, with its aliases.
extern const IcmpName kIcmpNames[];
extern const size_t kIcmpNameCount;

struct Flag {
  const char* name;
  uint16_t bit;
};
extern const Flag kTcpFlags[];  // FIN..URG, ALL, NONE
extern const size_t kTcpFlagCount;
extern const Flag kCtStates[];  // print order
extern const size_t kCtStateCount;
extern const Flag kCtStatuses[];
extern const size_t kCtStatusCount;
extern const Flag kAddrTypes[];
extern const size_t kAddrTypeCount;

struct RejectName {
  const char* name;
  const char* alias;
  RejectWith with;
};
extern const RejectName kRejectNames[];
extern const size_t kRejectNameCount;
const char* reject_name(RejectWith with);

// /etc/protocols through libc, as iptables does.
std::optional<uint8_t> protocol_number(std::string_view name);
std::string protocol_name(uint8_t proto);  // name, or the number when unnamed

// /etc/services through libc; proto may be empty (any).
std::optional<uint16_t> service_port(std::string_view name, std::string_view proto);

// While one is alive on this thread, the three lookups above remember each
// answer they gave. libc reads and parses the whole file on every call, and
// a rule set names "tcp" once per rule: 10 000 kube-proxy services are
// 130 000 rules, seconds of /etc/protocols. One parse or one save holds a
// cache, so an edit of those files counts from the next one, as it would
// for the next iptables-restore.
class LookupCache {
 public:
  LookupCache();
  ~LookupCache();
  LookupCache(const LookupCache&) = delete;
  LookupCache& operator=(const LookupCache&) = delete;
};

std::string ipv4_to_string(uint32_t addr);
// Number of leading ones, or -1 when the mask is not contiguous.
int mask_to_cidr(uint32_t mask);
constexpr uint32_t cidr_to_mask(int bits) {
  return bits == 0 ? 0u : ~uint32_t(0) << (32 - bits);
}

}  // namespace dpgate::rules::names
