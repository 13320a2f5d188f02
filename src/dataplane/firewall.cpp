#include "firewall.hpp"

#include <cstring>

namespace dpgate::dataplane {

namespace {

uint16_t address_type(const Router& r, uint32_t a) {
  if (r.is_local(a)) return rules::addr_type::kLocal;
  if (a == 0xffffffffu) return rules::addr_type::kBroadcast;
  if ((a >> 28) == 0xe) return rules::addr_type::kMulticast;
  for (uint16_t i = 0; i < r.port_count; ++i) {
    const PortInfo& port = r.ports[i];
    for (uint8_t k = 0; k < port.address_count; ++k) {
      const net::Ipv4Prefix& pf = port.addresses[k];
      if (pf.len < 31 && pf.contains(a) && (a | pf.mask()) == 0xffffffffu) return rules::addr_type::kBroadcast;
    }
  }
  return rules::addr_type::kUnicast;
}

// TCP options present, as a bitmap over kinds (for --tcp-option).
void read_tcp_options(const uint8_t* tcp, uint32_t header_len, std::array<uint64_t, 4>& out) {
  for (uint32_t i = 20; i < header_len;) {
    const uint8_t kind = tcp[i];
    out[kind >> 6] |= uint64_t{1} << (kind & 63);
    if (kind == 0) break;  // end of options
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= header_len || tcp[i + 1] < 2) break;
    i += tcp[i + 1];
  }
}

// nf_nat's address choice in a range: a hash of the connection's addresses
// (only the source with --persistent) picks one, so a client keeps its
// address across connections.
uint32_t pick_address(const rules::NatTarget& t, uint32_t src, uint32_t dst) {
  const uint32_t span = t.max_addr - t.min_addr + 1;
  if (span <= 1) return t.min_addr;
  uint64_t h = (uint64_t{src} * 0x9e3779b97f4a7c15ull) ^ (t.persistent ? 0 : uint64_t{dst} * 0xc2b2ae3d27d4eb4full);
  h ^= h >> 29;
  return t.min_addr + static_cast<uint32_t>(h % span);
}

conntrack::PortMode port_mode(const rules::NatTarget& t) {
  if (t.random_fully) return conntrack::PortMode::kRandomFully;
  if (t.random) return conntrack::PortMode::kRandom;
  return conntrack::PortMode::kPreserve;
}

bool has_ports(uint8_t proto) { return proto == net::kProtoTcp || proto == net::kProtoUdp || proto == net::kProtoIcmp; }

}  // namespace

// A new rules::Packet field must be set below (the worker's Packet holds the
// previous packet's values); this fails to remind whoever adds one.
static_assert(sizeof(rules::Packet) == 168, "fill_rule_packet sets every field of rules::Packet");

void fill_rule_packet(rules::Packet& p, const Router& r, const uint8_t* ip, const net::PacketMeta& meta,
                      uint16_t in_port, uint16_t out_port, uint32_t mark, const conntrack::CtView& ct,
                      uint32_t fields) {
  p.src = net::to_host(meta.tuple.src.v4());
  p.dst = net::to_host(meta.tuple.dst.v4());
  p.proto = meta.tuple.proto;
  p.sport = net::to_host(meta.tuple.src_port);
  p.dport = net::to_host(meta.tuple.dst_port);
  p.icmp_type = meta.icmp_type;
  p.icmp_code = meta.icmp_code;
  p.tcp_flags = meta.tcp_flags;
  p.tcp_options = {};
  if ((fields & rules::packet_field::kTcpOptions) && meta.tuple.proto == net::kProtoTcp &&
      meta.fragment != net::Fragment::kLater) {
    const uint8_t* tcp = ip + meta.l3_len;
    const uint32_t header_len = (tcp[12] >> 4) * 4u;
    if (header_len > 20) read_tcp_options(tcp, header_len, p.tcp_options);
  }
  p.length = meta.ip_total_len;
  p.ttl = meta.ttl;
  p.fragment = meta.fragment == net::Fragment::kLater;
  static constexpr char kNoName[rules::kIfNameSize] = {};
  std::memcpy(p.in_iface, in_port == kNoPort ? kNoName : r.ports[in_port].name, rules::kIfNameSize);
  std::memcpy(p.out_iface, out_port == kNoPort ? kNoName : r.ports[out_port].name, rules::kIfNameSize);
  p.in_iface[rules::kIfNameSize - 1] = p.out_iface[rules::kIfNameSize - 1] = '\0';
  p.mark = mark;
  if (fields & rules::packet_field::kAddrType) {
    p.src_type = address_type(r, p.src);
    p.dst_type = address_type(r, p.dst);
  }
  p.ct_state = ct.state;
  p.ct_status = ct.status;
  p.ct_dir = ct.dir == conntrack::Direction::kOriginal ? rules::CtDir::kOriginal : rules::CtDir::kReply;
  p.ct_mark = ct.mark;
  p.ct_expire = ct.expire_s;
  p.ct_confirmed = ct.confirmed;
  auto host_tuple = [](const net::FiveTuple& t) {
    return rules::Tuple{net::to_host(t.src.v4()), net::to_host(t.dst.v4()), net::to_host(t.src_port),
                        net::to_host(t.dst_port), t.proto};
  };
  if (fields & rules::packet_field::kCtTuples) {
    p.ct_orig = host_tuple(ct.orig);
    p.ct_reply = host_tuple(ct.reply);
  }
  p.payload = ip;
  p.payload_len = meta.ip_total_len;
}

void choose_dnat(const rules::NatTarget& t, const Router& r, uint16_t in_port, conntrack::Table& table,
                 conntrack::PortAllocator& ports, net::FiveTuple& reply, uint64_t now) {
  uint32_t addr;
  if (t.kind == rules::NatTarget::Kind::kRedirect) {
    addr = r.ports[in_port].primary_address();  // as REDIRECT: the incoming interface's primary address
  } else if (t.has_addr) {
    addr = pick_address(t, net::to_host(reply.dst.v4()), net::to_host(reply.src.v4()));
  } else {
    addr = net::to_host(reply.src.v4());
  }
  reply.src = net::IpAddr::from_v4(net::to_be32(addr));
  if (!t.has_port || !has_ports(reply.proto)) return;  // "if it's dst rewrite, can't change port"
  if (t.min_port == t.max_port && reply.proto != net::kProtoIcmp) {
    reply.src_port = net::to_be16(t.min_port);  // one port: taken even when in use
    return;
  }
  conntrack::PortRange range{t.min_port, t.max_port};
  if (!ports.choose(table, reply, conntrack::NatManip::kDst, range, port_mode(t), now) &&
      reply.proto != net::kProtoIcmp) {
    reply.src_port = net::to_be16(t.min_port);  // the range is full: the source side moves instead
  }
}

bool choose_snat(const rules::NatTarget& t, const Router& r, uint16_t out_port, uint32_t next_hop,
                 conntrack::Table& table, conntrack::PortAllocator& ports, conntrack::PortAllocator* any_ports,
                 net::FiveTuple& reply, uint64_t now) {
  uint32_t addr;
  if (t.kind == rules::NatTarget::Kind::kMasquerade) {
    addr = r.ports[out_port].source_for(next_hop);  // the egress port's address towards the next hop
  } else if (t.has_addr) {
    addr = pick_address(t, net::to_host(reply.dst.v4()), net::to_host(reply.src.v4()));
  } else {
    addr = net::to_host(reply.dst.v4());
  }
  reply.dst = net::IpAddr::from_v4(net::to_be32(addr));
  if (!has_ports(reply.proto)) return !table.in_use(reply, now);
  conntrack::PortRange range{};
  if (t.has_port) range = {t.min_port, t.max_port};
  if (ports.choose(table, reply, conntrack::NatManip::kSrc, range, port_mode(t), now)) return true;
  return any_ports != nullptr && any_ports->choose(table, reply, conntrack::NatManip::kSrc, range, port_mode(t), now);
}

bool null_binding(conntrack::Table& table, conntrack::PortAllocator& ports, net::FiveTuple& reply, uint64_t now) {
  if (!table.in_use(reply, now)) return true;
  if (!has_ports(reply.proto)) return false;
  return ports.choose(table, reply, conntrack::NatManip::kSrc, {}, conntrack::PortMode::kPreserve, now);
}

}  // namespace dpgate::dataplane
