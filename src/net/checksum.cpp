#include "dpgate/net/checksum.hpp"

#include <cstring>

#include "dpgate/net/packet.hpp"

namespace dpgate::net {

uint32_t checksum_partial(const void* data, size_t len, uint32_t initial) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint64_t sum = initial;
  for (; len >= 2; len -= 2, bytes += 2) {
    uint16_t word;
    std::memcpy(&word, bytes, 2);
    sum += word;
  }
  if (len == 1) sum += bytes[0];  // the odd byte is the high-order byte on the wire
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint32_t>(sum);
}

uint16_t ipv4_l4_checksum(const uint8_t* ip) {
  const uint32_t ihl = (ip[0] & 0x0f) * 4u;
  const uint32_t total = (uint32_t{ip[2]} << 8) | ip[3];
  const uint32_t l4_len = total - ihl;
  const uint8_t proto = ip[9];
  uint32_t sum = 0;
  if (proto != kProtoIcmp) {
    sum = checksum_partial(ip + 12, 8);  // source and destination address
    const uint16_t proto_len[2] = {static_cast<uint16_t>(bswap16(proto)),
                                   bswap16(static_cast<uint16_t>(l4_len))};
    sum = checksum_partial(proto_len, 4, sum);
  }
  sum = checksum_partial(ip + ihl, l4_len, sum);
  const uint16_t result = checksum_finish(sum);
  // UDP sends a computed 0 as 0xffff (RFC 768).
  return (proto == kProtoUdp && result == 0) ? 0xffff : result;
}

}  // namespace dpgate::net
