// `conntrack -L` text for FlowInfo copies of entries. Control thread only
// (allocates); workers never format.
#pragma once

#include <string>

#include "dpgate/conntrack/table.hpp"

namespace dpgate::conntrack {

// The kernel's TCP state names ("ESTABLISHED", "SYN_SENT2", ...).
const char* tcp_state_name(TcpState s);

// One line as conntrack-tools prints it with accounting on, e.g.
// "tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.18.1.1 sport=40000
// dport=80 packets=3 bytes=180 src=198.18.1.1 dst=198.18.0.1 sport=80
// dport=40000 packets=2 bytes=112 [ASSURED] mark=0 use=1".
// A redirect stub prints as "redirect ... owner=K" with its reply tuple.
std::string format_conntrack(const FlowInfo& f);

}  // namespace dpgate::conntrack
