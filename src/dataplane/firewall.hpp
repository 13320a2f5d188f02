// What the stateful stages of the worker need around rule evaluation: the
// rules::Packet view of a parsed packet with its conntrack view, and the
// address/port choice of DNAT, REDIRECT, SNAT and MASQUERADE for a new flow.
// Private to the data plane; the owning worker calls them on its packets.
#pragma once

#include <cstdint>

#include "dpgate/conntrack/port_allocator.hpp"
#include "dpgate/conntrack/view.hpp"
#include "dpgate/dataplane/router.hpp"
#include "dpgate/net/packet.hpp"
#include "dpgate/rules/packet.hpp"

namespace dpgate::dataplane {

// Fills `p` for evaluation: header fields from `meta` (the IPv4 header at
// `ip`), interfaces by port index (kNoPort for none), the packet mark, the
// ct view, address types, and the datagram as payload (xt_string counts
// offsets from the IP header). Every field is set (the worker reuses one
// Packet for all its packets) except the costly ones no rule reads: those of
// rules::packet_field not in `fields` (address types, ct tuples, TCP options).
inline constexpr uint16_t kNoPort = 0xffff;
void fill_rule_packet(rules::Packet& p, const Router& r, const uint8_t* ip, const net::PacketMeta& meta,
                      uint16_t in_port, uint16_t out_port, uint32_t mark, const conntrack::CtView& ct,
                      uint32_t fields);

// Applies a DNAT or REDIRECT target to a new flow's reply tuple (its source
// becomes the new destination). `in_port` gives REDIRECT's address. As in
// netfilter this never fails: without a port range the port is kept, with
// one a free port of the range is taken if there is one; a reply tuple left
// in use is made unique afterwards by the source side (null_binding).
void choose_dnat(const rules::NatTarget& t, const Router& r, uint16_t in_port, conntrack::Table& table,
                 conntrack::PortAllocator& ports, net::FiveTuple& reply, uint64_t now);

// Applies SNAT or MASQUERADE (the egress port's address towards
// `next_hop`) to the reply tuple (its destination becomes the new source).
// The port comes from `ports`, this worker's slice, whose replies port
// steering brings here; when the slice holds no free port of the range (a
// single port of another worker's slice, or all of its own taken) it comes
// from `any_ports` if given, as the kernel would take it, and the flow's
// replies then need stubs (needs_redirects()). False when no port was free.
bool choose_snat(const rules::NatTarget& t, const Router& r, uint16_t out_port, uint32_t next_hop,
                 conntrack::Table& table, conntrack::PortAllocator& ports, conntrack::PortAllocator* any_ports,
                 net::FiveTuple& reply, uint64_t now);

// netfilter's null binding (nf_nat_alloc_null_binding) for a new flow that no
// SNAT rule translated: when its reply tuple is already taken - a second
// client connection DNATed onto the same backend tuple through another
// service address, say - the source port moves (within its class, in this
// worker's slice) and the address stays. True when the tuple is unique,
// false when no port was free.
bool null_binding(conntrack::Table& table, conntrack::PortAllocator& ports, net::FiveTuple& reply, uint64_t now);

}  // namespace dpgate::dataplane
