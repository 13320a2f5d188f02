#include "dpgate/net/builder.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "dpgate/net/checksum.hpp"
#include "dpgate/net/packet.hpp"

namespace dpgate::net {

namespace {

void put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}
void put32(std::vector<uint8_t>& v, uint32_t x) {
  put16(v, static_cast<uint16_t>(x >> 16));
  put16(v, static_cast<uint16_t>(x));
}
void set16(std::vector<uint8_t>& v, size_t at, uint16_t x) {
  v[at] = static_cast<uint8_t>(x >> 8);
  v[at + 1] = static_cast<uint8_t>(x);
}
uint32_t ip_or_throw(std::string_view text) {
  auto ip = parse_ipv4(text);
  if (!ip) throw std::invalid_argument("PacketBuilder: bad IPv4 address " + std::string(text));
  return *ip;
}

}  // namespace

PacketBuilder& PacketBuilder::eth(MacAddr src, MacAddr dst) {
  src_mac_ = src;
  dst_mac_ = dst;
  return *this;
}
PacketBuilder& PacketBuilder::vlan(uint16_t tci) {
  vlan_tci_ = tci;
  return *this;
}
PacketBuilder& PacketBuilder::ether_type(uint16_t type) {
  ether_type_ = type;
  return *this;
}
PacketBuilder& PacketBuilder::ipv4(std::string_view src, std::string_view dst) {
  has_ipv4_ = true;
  src_ip_ = ip_or_throw(src);
  dst_ip_ = ip_or_throw(dst);
  return *this;
}
PacketBuilder& PacketBuilder::ttl(uint8_t ttl) {
  ttl_ = ttl;
  return *this;
}
PacketBuilder& PacketBuilder::tos(uint8_t tos) {
  tos_ = tos;
  return *this;
}
PacketBuilder& PacketBuilder::ip_id(uint16_t id) {
  ip_id_ = id;
  return *this;
}
PacketBuilder& PacketBuilder::dont_fragment() {
  frag_field_ |= 0x4000;
  return *this;
}
PacketBuilder& PacketBuilder::fragment(uint16_t offset, bool more_fragments) {
  frag_field_ = static_cast<uint16_t>((frag_field_ & 0x4000) | (more_fragments ? 0x2000 : 0) |
                                      (offset & 0x1fff));
  return *this;
}
PacketBuilder& PacketBuilder::ip_options(std::vector<uint8_t> options) {
  ip_options_ = std::move(options);
  return *this;
}
PacketBuilder& PacketBuilder::proto(uint8_t proto) {
  proto_ = proto;
  l4_ = L4::kNone;
  return *this;
}
PacketBuilder& PacketBuilder::tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq) {
  l4_ = L4::kTcp;
  proto_ = kProtoTcp;
  sport_ = sport;
  dport_ = dport;
  tcp_flags_ = flags;
  tcp_seq_ = seq;
  return *this;
}
PacketBuilder& PacketBuilder::udp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kUdp;
  proto_ = kProtoUdp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::icmp(uint8_t type, uint8_t code, uint16_t id, uint16_t seq) {
  l4_ = L4::kIcmp;
  proto_ = kProtoIcmp;
  icmp_type_ = type;
  icmp_code_ = code;
  sport_ = id;
  dport_ = seq;
  return *this;
}
PacketBuilder& PacketBuilder::arp(uint16_t op, MacAddr sender_mac, std::string_view sender_ip,
                                  MacAddr target_mac, std::string_view target_ip) {
  arp_.clear();
  put16(arp_, 1);       // hardware: Ethernet
  put16(arp_, 0x0800);  // protocol: IPv4
  arp_.push_back(6);
  arp_.push_back(4);
  put16(arp_, op);
  arp_.insert(arp_.end(), sender_mac.bytes.begin(), sender_mac.bytes.end());
  put32(arp_, ip_or_throw(sender_ip));
  arp_.insert(arp_.end(), target_mac.bytes.begin(), target_mac.bytes.end());
  put32(arp_, ip_or_throw(target_ip));
  return *this;
}
PacketBuilder& PacketBuilder::payload(std::vector<uint8_t> bytes) {
  payload_ = std::move(bytes);
  return *this;
}
PacketBuilder& PacketBuilder::payload(std::string_view text) {
  payload_.assign(text.begin(), text.end());
  return *this;
}
PacketBuilder& PacketBuilder::version(uint8_t version) {
  version_ = version;
  return *this;
}
PacketBuilder& PacketBuilder::ihl(uint8_t ihl_words) {
  ihl_ = ihl_words;
  return *this;
}
PacketBuilder& PacketBuilder::total_length(uint16_t total_length) {
  total_length_ = total_length;
  return *this;
}
PacketBuilder& PacketBuilder::ip_checksum(uint16_t raw_value) {
  ip_checksum_ = raw_value;
  return *this;
}
PacketBuilder& PacketBuilder::truncate(size_t frame_len) {
  truncate_ = frame_len;
  return *this;
}

std::vector<uint8_t> PacketBuilder::build() const {
  std::vector<uint8_t> f;
  f.insert(f.end(), dst_mac_.bytes.begin(), dst_mac_.bytes.end());
  f.insert(f.end(), src_mac_.bytes.begin(), src_mac_.bytes.end());
  if (vlan_tci_) {
    put16(f, kEtherTypeVlan);
    put16(f, *vlan_tci_);
  }
  const uint16_t derived_type = has_ipv4_ ? kEtherTypeIpv4 : (!arp_.empty() ? kEtherTypeArp : 0);
  put16(f, ether_type_.value_or(derived_type));
  if (!has_ipv4_) {
    f.insert(f.end(), arp_.begin(), arp_.end());
    f.insert(f.end(), payload_.begin(), payload_.end());
  } else {
    const size_t ip_at = f.size();
    const size_t ihl = 20 + ip_options_.size();
    f.push_back(static_cast<uint8_t>(0x40 | (ihl / 4)));
    f.push_back(tos_);
    put16(f, 0);  // total length, set below
    put16(f, ip_id_);
    put16(f, frag_field_);
    f.push_back(ttl_);
    f.push_back(proto_);
    put16(f, 0);  // checksum, set below
    put32(f, src_ip_);
    put32(f, dst_ip_);
    f.insert(f.end(), ip_options_.begin(), ip_options_.end());
    const size_t l4_at = f.size();
    switch (l4_) {
      case L4::kTcp:
        put16(f, sport_);
        put16(f, dport_);
        put32(f, tcp_seq_);
        put32(f, (tcp_flags_ & 0x10) ? 1 : 0);  // ack number
        f.push_back(0x50);                       // data offset 5
        f.push_back(tcp_flags_);
        put16(f, 65535);  // window
        put16(f, 0);      // checksum
        put16(f, 0);      // urgent pointer
        break;
      case L4::kUdp:
        put16(f, sport_);
        put16(f, dport_);
        put16(f, static_cast<uint16_t>(8 + payload_.size()));
        put16(f, 0);
        break;
      case L4::kIcmp:
        f.push_back(icmp_type_);
        f.push_back(icmp_code_);
        put16(f, 0);
        put16(f, sport_);
        put16(f, dport_);
        break;
      case L4::kNone:
        break;
    }
    f.insert(f.end(), payload_.begin(), payload_.end());
    set16(f, ip_at + 2, static_cast<uint16_t>(f.size() - ip_at));
    if (l4_ != L4::kNone && (frag_field_ & 0x1fff) == 0) {
      const uint16_t l4_sum = ipv4_l4_checksum(&f[ip_at]);
      const size_t sum_at = l4_at + (l4_ == L4::kTcp ? 16 : l4_ == L4::kUdp ? 6 : 2);
      std::memcpy(&f[sum_at], &l4_sum, 2);
    }
    if (version_) f[ip_at] = static_cast<uint8_t>((*version_ << 4) | (f[ip_at] & 0x0f));
    if (ihl_) f[ip_at] = static_cast<uint8_t>((f[ip_at] & 0xf0) | (*ihl_ & 0x0f));
    if (total_length_) set16(f, ip_at + 2, *total_length_);
    const uint16_t ip_sum = checksum(&f[ip_at], ihl);
    std::memcpy(&f[ip_at + 10], &ip_sum, 2);
    if (ip_checksum_) set16(f, ip_at + 10, *ip_checksum_);
  }
  if (truncate_ && *truncate_ < f.size()) f.resize(*truncate_);
  return f;
}

}  // namespace dpgate::net
