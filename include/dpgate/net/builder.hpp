// Builds Ethernet frames byte by byte for tests, fuzz seeds and the pcap
// generator: PacketBuilder().eth(..).ipv4(..).tcp(..).payload(..).build().
// Checksums and lengths are right unless a test overrides them to make a
// malformed frame. Control-plane code (allocates); never used by workers.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "dpgate/net/addr.hpp"

namespace dpgate::net {

class PacketBuilder {
 public:
  PacketBuilder& eth(MacAddr src, MacAddr dst);
  PacketBuilder& vlan(uint16_t tci);
  PacketBuilder& ether_type(uint16_t type);  // overrides the type derived from the L3 header
  PacketBuilder& ipv4(std::string_view src, std::string_view dst);
  PacketBuilder& ttl(uint8_t ttl);
  PacketBuilder& tos(uint8_t tos);
  PacketBuilder& ip_id(uint16_t id);
  PacketBuilder& dont_fragment();
  PacketBuilder& fragment(uint16_t offset_8byte_units, bool more_fragments);
  PacketBuilder& ip_options(std::vector<uint8_t> options);
  PacketBuilder& proto(uint8_t proto);  // a bare protocol number, no L4 header
  PacketBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags = 0x02, uint32_t seq = 1);
  PacketBuilder& udp(uint16_t sport, uint16_t dport);
  PacketBuilder& icmp(uint8_t type, uint8_t code, uint16_t id = 0, uint16_t seq = 0);
  PacketBuilder& arp(uint16_t op, MacAddr sender_mac, std::string_view sender_ip,
                     MacAddr target_mac, std::string_view target_ip);
  PacketBuilder& payload(std::vector<uint8_t> bytes);
  PacketBuilder& payload(std::string_view text);

  // Malformations, applied after everything else is laid out.
  PacketBuilder& version(uint8_t version);
  PacketBuilder& ihl(uint8_t ihl_words);
  PacketBuilder& total_length(uint16_t total_length);
  PacketBuilder& ip_checksum(uint16_t raw_value);
  PacketBuilder& truncate(size_t frame_len);

  std::vector<uint8_t> build() const;

 private:
  enum class L4 : uint8_t { kNone, kTcp, kUdp, kIcmp };
  MacAddr src_mac_{{0x02, 0, 0, 0, 0, 1}};
  MacAddr dst_mac_{{0x02, 0, 0, 0, 0, 2}};
  std::optional<uint16_t> vlan_tci_;
  std::optional<uint16_t> ether_type_;
  bool has_ipv4_ = false;
  uint32_t src_ip_ = 0, dst_ip_ = 0;
  uint8_t ttl_ = 64, tos_ = 0, proto_ = 0;
  uint16_t ip_id_ = 0, frag_field_ = 0;
  std::vector<uint8_t> ip_options_;
  L4 l4_ = L4::kNone;
  uint16_t sport_ = 0, dport_ = 0;
  uint8_t tcp_flags_ = 0, icmp_type_ = 0, icmp_code_ = 0;
  uint32_t tcp_seq_ = 0;
  std::vector<uint8_t> arp_;
  std::vector<uint8_t> payload_;
  std::optional<uint8_t> version_, ihl_;
  std::optional<uint16_t> total_length_, ip_checksum_;
  std::optional<size_t> truncate_;
};

}  // namespace dpgate::net
