#include "arp.hpp"

#include <rte_mbuf.h>

#include <cstring>

#include "dpgate/net/packet.hpp"

namespace dpgate::dataplane {

namespace {

constexpr uint16_t kArpLen = 28;
constexpr uint16_t kMinFrame = 60;  // Ethernet minimum without FCS

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void store32(uint8_t* p, uint32_t v) {
  store16(p, static_cast<uint16_t>(v >> 16));
  store16(p + 2, static_cast<uint16_t>(v));
}

}  // namespace

bool read_arp(const uint8_t* arp, ArpPacket& out) {
  if (load16(arp) != 1 || load16(arp + 2) != net::kEtherTypeIpv4 || arp[4] != 6 || arp[5] != 4) {
    return false;
  }
  out.op = load16(arp + 6);
  if (out.op != kArpRequest && out.op != kArpReply) return false;
  std::memcpy(out.sender_mac.bytes.data(), arp + 8, 6);
  out.sender_ip = load32(arp + 14);
  std::memcpy(out.target_mac.bytes.data(), arp + 18, 6);
  out.target_ip = load32(arp + 24);
  return true;
}

void arp_request_to_reply(uint8_t* frame, uint16_t l2_len, const net::MacAddr& our_mac) {
  uint8_t* arp = frame + l2_len;
  uint8_t asked_ip[4];
  std::memcpy(asked_ip, arp + 24, 4);
  store16(arp + 6, kArpReply);
  std::memcpy(arp + 18, arp + 8, 10);  // target <- sender (MAC and IP)
  std::memcpy(arp + 8, our_mac.bytes.data(), 6);
  std::memcpy(arp + 14, asked_ip, 4);
  std::memcpy(frame, arp + 18, 6);  // Ethernet destination: the requester
  std::memcpy(frame + 6, our_mac.bytes.data(), 6);
}

rte_mbuf* build_arp_request(rte_mempool* pool, const net::MacAddr& our_mac, uint32_t our_ip,
                            uint32_t target_ip) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, kMinFrame));
  if (f == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memset(f, 0, kMinFrame);
  std::memset(f, 0xff, 6);
  std::memcpy(f + 6, our_mac.bytes.data(), 6);
  store16(f + 12, net::kEtherTypeArp);
  uint8_t* arp = f + net::kEthHeaderLen;
  store16(arp, 1);
  store16(arp + 2, net::kEtherTypeIpv4);
  arp[4] = 6;
  arp[5] = 4;
  store16(arp + 6, kArpRequest);
  std::memcpy(arp + 8, our_mac.bytes.data(), 6);
  store32(arp + 14, our_ip);
  store32(arp + 24, target_ip);  // target MAC stays zero
  static_assert(net::kEthHeaderLen + kArpLen <= kMinFrame);
  return m;
}

}  // namespace dpgate::dataplane
