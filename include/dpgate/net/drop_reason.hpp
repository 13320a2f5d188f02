// Why the data plane dropped a packet: the one vocabulary for drop counters,
// used by parsing (net), forwarding (dataplane) and reports (control).
#pragma once

#include <cstdint>
#include <string_view>

namespace dpgate::net {

enum class DropReason : uint8_t {
  kNone = 0,
  // parsing
  kTruncatedEthernet,
  kUnsupportedEtherType,
  kTruncatedIpHeader,
  kBadIpVersion,
  kBadIpHeaderLength,
  kBadIpTotalLength,
  kBadIpChecksum,
  kTruncatedL4Header,
  kBadTcpHeaderLength,
  kMartianSource,
  kMartianDestination,
  kMalformedArp,
  // forwarding
  kNotForUs,
  kIpv6NotForwarded,
  kNoRoute,
  kTtlExceeded,
  kFragmentationNeeded,
  kLocalUnsupported,
  kNeighbourQueueFull,
  kNeighbourUnresolved,
  kTxFull,
  kNoMbuf,
  // rules and connection tracking
  kRuleDrop,        // a DROP verdict or a DROP policy
  kRuleReject,      // a REJECT verdict (the reply, if any, was sent)
  kConntrackFull,   // no room for a new flow, nothing evictable
  kConntrackClash,  // the new flow's reply tuple is already in use
  kNatNoPort,       // no free port in the NAT range
  kHandoverFull,    // the owner worker's ring was full
  kCount
};

constexpr std::string_view drop_reason_name(DropReason r) {
  constexpr std::string_view kNames[] = {
      "none",
      "truncated_ethernet",
      "unsupported_ethertype",
      "truncated_ip_header",
      "bad_ip_version",
      "bad_ip_header_length",
      "bad_ip_total_length",
      "bad_ip_checksum",
      "truncated_l4_header",
      "bad_tcp_header_length",
      "martian_source",
      "martian_destination",
      "malformed_arp",
      "not_for_us",
      "ipv6_not_forwarded",
      "no_route",
      "ttl_exceeded",
      "fragmentation_needed",
      "local_unsupported",
      "neighbour_queue_full",
      "neighbour_unresolved",
      "tx_full",
      "no_mbuf",
      "rule_drop",
      "rule_reject",
      "conntrack_full",
      "conntrack_clash",
      "nat_no_port",
      "handover_full",
  };
  static_assert(std::size(kNames) == static_cast<size_t>(DropReason::kCount));
  return kNames[static_cast<size_t>(r)];
}

}  // namespace dpgate::net
