// ARP for IPv4 over Ethernet (RFC 826): reading requests and replies,
// answering in place, and building requests. Private to the data plane.
#pragma once

#include <cstdint>

#include "dpgate/net/addr.hpp"

struct rte_mbuf;
struct rte_mempool;

namespace dpgate::dataplane {

inline constexpr uint16_t kArpRequest = 1;
inline constexpr uint16_t kArpReply = 2;

struct ArpPacket {
  uint16_t op = 0;
  net::MacAddr sender_mac;
  uint32_t sender_ip = 0;  // host order
  net::MacAddr target_mac;
  uint32_t target_ip = 0;  // host order
};

// Reads the ARP body at `arp` (28 bytes available). False unless it is
// Ethernet/IPv4 with a request or reply opcode.
bool read_arp(const uint8_t* arp, ArpPacket& out);

// Turns the request in `frame` (ARP body at `frame + l2_len`) into the reply
// from `our_mac`, addressed back to the requester.
void arp_request_to_reply(uint8_t* frame, uint16_t l2_len, const net::MacAddr& our_mac);

// A broadcast who-has `target_ip` from (our_mac, our_ip). nullptr if the pool is empty.
rte_mbuf* build_arp_request(rte_mempool* pool, const net::MacAddr& our_mac, uint32_t our_ip,
                            uint32_t target_ip);

}  // namespace dpgate::dataplane
