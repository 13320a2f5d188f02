// The iptables LOG target's records. A worker that passes a LOG rule copies
// what the kernel's nf_log_ipv4 would print - the rule's level, prefix and
// flags, the interfaces, the MAC header and the datagram's first bytes - into
// a fixed-size LogRecord and puts it on its own single-producer ring; the
// control thread drains the rings and formats each record as the kernel's
// log line (format_log_record). Workers call make_log_record on their own
// packets (no allocation, no syscall); formatting is control-thread work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dpgate/rules/ruleset.hpp"

namespace dpgate::dataplane {

// xt_LOG's logflags (XT_LOG_*), as rules::LogTarget::flags holds them.
namespace log_flag {
constexpr uint8_t kTcpSequence = 0x01;
constexpr uint8_t kTcpOptions = 0x02;
constexpr uint8_t kIpOptions = 0x04;
constexpr uint8_t kUid = 0x08;
constexpr uint8_t kMacDecode = 0x20;
}  // namespace log_flag

// One logged packet. Plain bytes, copied through an rte_ring.
struct LogRecord {
  static constexpr size_t kPrefixSize = 30;  // 29 characters and a NUL, as xt_LOG's prefix
  static constexpr size_t kIfNameSize = 16;  // IFNAMSIZ
  // Enough for everything nf_log_ipv4 reads: an IP header with options (60),
  // and for an ICMP error its header (8), the quoted IP header (60) and the
  // quoted TCP header with options (60); rounded up to fill the record.
  static constexpr size_t kIpBytes = 196;

  uint8_t level = 4;  // syslog level 0-7 (--log-level)
  uint8_t flags = 0;  // log_flag bits
  rules::Hook hook = rules::Hook::kForward;
  bool has_vlan = false;   // the frame carried an 802.1Q tag (--log-macdecode prints it)
  uint16_t vlan_tci = 0;   // host order
  uint16_t ip_len = 0;     // bytes from the IP header to the packet's end (the kernel's skb->len)
  uint16_t copied = 0;     // how many of them `ip` holds
  uint16_t pad = 0;
  uint32_t mark = 0;       // the packet mark at the rule; printed as MARK= when not 0
  char prefix[kPrefixSize] = {};
  char in[kIfNameSize] = {};   // "" when the packet has no input interface
  char out[kIfNameSize] = {};  // "" in PREROUTING and INPUT
  uint8_t mac[14] = {};        // destination, source, EtherType (inside a VLAN tag)
  uint8_t ip[kIpBytes] = {};
};
static_assert(sizeof(LogRecord) == 288);
static_assert(sizeof(LogRecord) % 8 == 0, "rte_ring elements are copied in 8-byte words");

// Fills `rec` for a packet that passed LOG rule `target` in `hook`: the
// Ethernet frame at `frame` (its IP header at `l2_len`), `ip_copy` the first
// `copy_len` bytes from the IP header (min(ip_len, kIpBytes) where the packet
// has them), `ip_len` the bytes from the IP header to the packet's end.
// Interface names are "" for none. In FORWARD and POSTROUTING the logged TTL
// of a forwarded packet (`in` not "") is one less than the packet's, as the
// kernel decrements it before the FORWARD hook (ip_forward); what the router
// sends itself (OUTPUT, then POSTROUTING, `in` "") keeps its TTL. Any thread;
// workers call it on their packets.
void make_log_record(LogRecord& rec, const rules::LogTarget& target, rules::Hook hook, const char* in,
                     const char* out, uint32_t mark, const uint8_t* frame, uint16_t l2_len,
                     const uint8_t* ip_copy, uint16_t copy_len, uint16_t ip_len);

// The record as the kernel's nf_log_ipv4 logs it (net/netfilter/
// nf_log_syslog.c, Linux 6.18), without the syslog level:
//   "web: IN=lan OUT=wan MAC=... SRC=198.18.1.2 DST=198.18.2.2 LEN=60 TOS=0x00
//    PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=40000 DPT=80 WINDOW=64240
//    RES=0x00 SYN URGP=0 "
// Every field ends with a space, as the kernel's do. --log-uid prints
// nothing: dpgate's packets have no local socket. Any thread.
std::string format_log_record(const LogRecord& rec);

}  // namespace dpgate::dataplane
