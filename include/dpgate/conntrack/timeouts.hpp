// Conntrack timeouts and tracking switches, in seconds, with netfilter's
// defaults (the nf_conntrack_* sysctls of Linux 6.1). Plain configuration:
// the control thread fills one from the config and hands a copy to each
// worker's Table at construction.
#pragma once

#include <cstdint>

namespace dpgate::conntrack {

struct Timeouts {
  // net.netfilter.nf_conntrack_tcp_timeout_*
  uint32_t tcp_syn_sent = 120;
  uint32_t tcp_syn_recv = 60;
  uint32_t tcp_established = 432000;
  uint32_t tcp_fin_wait = 120;
  uint32_t tcp_close_wait = 60;
  uint32_t tcp_last_ack = 30;
  uint32_t tcp_time_wait = 120;
  uint32_t tcp_close = 10;
  uint32_t tcp_syn_sent2 = 120;  // simultaneous open; no sysctl, kernel constant
  // nf_conntrack_tcp_timeout_unacknowledged: also caps a picked-up
  // connection's ESTABLISHED timeout until it has seen a reply.
  uint32_t tcp_unacknowledged = 300;
  uint32_t udp = 30;         // nf_conntrack_udp_timeout: not (yet) a stream
  uint32_t udp_stream = 120; // nf_conntrack_udp_timeout_stream
  uint32_t icmp = 30;        // nf_conntrack_icmp_timeout
  uint32_t generic = 600;    // nf_conntrack_generic_timeout (other protocols)
  // nf_conntrack_tcp_loose: pick up connections from a mid-stream ACK.
  bool tcp_loose = true;
};

}  // namespace dpgate::conntrack
