#include "icmp.hpp"

#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "dpgate/net/checksum.hpp"

namespace dpgate::dataplane {

namespace {

constexpr uint32_t kMaxIcmpErrorLen = 576;  // RFC 1812 §4.3.2.3
constexpr uint32_t kIpHeaderLen = 20;
constexpr uint32_t kIcmpHeaderLen = 8;
constexpr uint8_t kDefaultTtl = 64;

bool is_icmp_error_type(uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

}  // namespace

bool may_send_icmp_error(const net::PacketMeta& meta) {
  if (meta.fragment == net::Fragment::kLater) return false;
  if (meta.tuple.proto == net::kProtoIcmp && is_icmp_error_type(meta.icmp_type)) return false;
  const uint32_t src = net::to_host(meta.tuple.src.v4());
  return !net::is_martian_source(src);
}

rte_mbuf* build_icmp_error(rte_mempool* pool, const uint8_t* ip, uint32_t src_ip, uint8_t type,
                           uint8_t code, uint16_t mtu) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  const uint32_t orig_len = (uint32_t{ip[2]} << 8) | ip[3];
  const uint32_t quoted = std::min(orig_len, kMaxIcmpErrorLen - kIpHeaderLen - kIcmpHeaderLen);
  const uint32_t total = kIpHeaderLen + kIcmpHeaderLen + quoted;
  auto* frame = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(net::kEthHeaderLen + total)));
  if (frame == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memset(frame, 0, net::kEthHeaderLen);
  frame[12] = net::kEtherTypeIpv4 >> 8;
  frame[13] = net::kEtherTypeIpv4 & 0xff;
  uint8_t* out = frame + net::kEthHeaderLen;
  out[0] = 0x45;
  out[1] = 0xc0;  // precedence "internetwork control", as Linux sends ICMP errors
  out[2] = static_cast<uint8_t>(total >> 8);
  out[3] = static_cast<uint8_t>(total);
  std::memset(out + 4, 0, 4);  // id 0, no fragmentation
  out[8] = kDefaultTtl;
  out[9] = net::kProtoIcmp;
  out[10] = out[11] = 0;
  const net::be32 src = net::to_be32(src_ip);
  std::memcpy(out + 12, &src, 4);
  std::memcpy(out + 16, ip + 12, 4);  // back to the original source
  const uint16_t ip_sum = net::checksum(out, kIpHeaderLen);
  std::memcpy(out + 10, &ip_sum, 2);

  uint8_t* icmp = out + kIpHeaderLen;
  icmp[0] = type;
  icmp[1] = code;
  icmp[2] = icmp[3] = 0;
  icmp[4] = icmp[5] = 0;
  icmp[6] = static_cast<uint8_t>(mtu >> 8);  // only meaningful for Fragmentation Needed
  icmp[7] = static_cast<uint8_t>(mtu);
  if (!(type == kIcmpUnreachable && code == kIcmpCodeFragNeeded)) icmp[6] = icmp[7] = 0;
  std::memcpy(icmp + kIcmpHeaderLen, ip, quoted);
  const uint16_t icmp_sum = net::checksum(icmp, kIcmpHeaderLen + quoted);
  std::memcpy(icmp + 2, &icmp_sum, 2);
  return m;
}

rte_mbuf* build_tcp_reset(rte_mempool* pool, const uint8_t* ip, const net::PacketMeta& meta) {
  constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
  if (meta.tuple.proto != net::kProtoTcp || meta.fragment == net::Fragment::kLater || (meta.tcp_flags & kRst)) {
    return nullptr;
  }
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  constexpr uint32_t kTotal = kIpHeaderLen + 20;
  auto* frame = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, net::kEthHeaderLen + kTotal));
  if (frame == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memset(frame, 0, net::kEthHeaderLen + kTotal);
  frame[12] = net::kEtherTypeIpv4 >> 8;
  frame[13] = net::kEtherTypeIpv4 & 0xff;
  uint8_t* out = frame + net::kEthHeaderLen;
  out[0] = 0x45;
  out[3] = kTotal;
  out[6] = 0x40;  // DF, as Linux sends resets
  out[8] = kDefaultTtl;
  out[9] = net::kProtoTcp;
  std::memcpy(out + 12, ip + 16, 4);
  std::memcpy(out + 16, ip + 12, 4);
  const uint16_t ip_sum = net::checksum(out, kIpHeaderLen);
  std::memcpy(out + 10, &ip_sum, 2);

  const uint8_t* in_tcp = ip + meta.l3_len;
  uint8_t* tcp = out + kIpHeaderLen;
  std::memcpy(tcp, in_tcp + 2, 2);  // ports swapped
  std::memcpy(tcp + 2, in_tcp, 2);
  const uint32_t in_data_offset = (in_tcp[12] >> 4) * 4u;
  if (meta.tcp_flags & kAck) {
    std::memcpy(tcp + 4, in_tcp + 8, 4);  // seq = their ack_seq
    tcp[13] = kRst;
  } else {
    const uint32_t payload = meta.ip_total_len - meta.l3_len - in_data_offset;
    const uint32_t seq = (uint32_t{in_tcp[4]} << 24) | (uint32_t{in_tcp[5]} << 16) | (uint32_t{in_tcp[6]} << 8) | in_tcp[7];
    const uint32_t ack = seq + payload + ((meta.tcp_flags & kSyn) ? 1 : 0) + ((meta.tcp_flags & kFin) ? 1 : 0);
    const net::be32 ack_be = net::to_be32(ack);
    std::memcpy(tcp + 8, &ack_be, 4);
    tcp[13] = kRst | kAck;
  }
  tcp[12] = 0x50;
  const uint16_t tcp_sum = net::ipv4_l4_checksum(out);
  std::memcpy(tcp + 16, &tcp_sum, 2);
  return m;
}

bool echo_request_to_reply(uint8_t* ip, uint16_t ip_total_len) {
  const uint32_t ihl = (ip[0] & 0x0f) * 4u;
  uint8_t* icmp = ip + ihl;
  const uint32_t icmp_len = ip_total_len - ihl;
  if (net::checksum(icmp, icmp_len) != 0) return false;
  uint16_t old_word, new_word, sum;
  std::memcpy(&old_word, icmp, 2);
  icmp[0] = kIcmpEchoReply;
  std::memcpy(&new_word, icmp, 2);
  std::memcpy(&sum, icmp + 2, 2);
  sum = net::checksum_adjust16(sum, old_word, new_word);
  std::memcpy(icmp + 2, &sum, 2);

  uint8_t addr[4];
  std::memcpy(addr, ip + 12, 4);
  std::memcpy(ip + 12, ip + 16, 4);
  std::memcpy(ip + 16, addr, 4);
  ip[8] = kDefaultTtl;
  ip[10] = ip[11] = 0;
  const uint16_t ip_sum = net::checksum(ip, ihl);
  std::memcpy(ip + 10, &ip_sum, 2);
  return true;
}

}  // namespace dpgate::dataplane
