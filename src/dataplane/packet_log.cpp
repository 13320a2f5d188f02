// LOG records: the worker's copy (make_log_record) and the control thread's
// formatting, a port of nf_log_ipv4 (net/netfilter/nf_log_syslog.c, Linux
// 6.18) over the copied bytes. Where the kernel reads a header with
// skb_header_pointer, this reads the record's bytes and treats a header that
// runs past the packet's end the same way ("INCOMPLETE [N bytes]").
#include "dpgate/dataplane/packet_log.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace dpgate::dataplane {

namespace {

constexpr uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17, kProtoEsp = 50, kProtoAh = 51,
                  kProtoUdpLite = 136;
constexpr uint16_t kIpCe = 0x8000, kIpDf = 0x4000, kIpMf = 0x2000, kIpOffset = 0x1fff;

uint16_t be16_at(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32_at(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// nf_log_buf_add over a std::string.
class Line {
 public:
  __attribute__((format(printf, 2, 3))) void add(const char* fmt, ...) {
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) text_.append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
  }
  void add_hex(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) add("%02X", p[i]);
  }
  void add_ipv4(const char* name, const uint8_t* a) { add("%s=%u.%u.%u.%u ", name, a[0], a[1], a[2], a[3]); }
  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

// The packet as the kernel's skb: `len` bytes from the IP header, of which
// the record holds the first `copied`.
struct Skb {
  const uint8_t* data;
  uint32_t len;
  uint32_t copied;
  // skb_header_pointer: the n bytes at off, or nullptr past the packet's end.
  const uint8_t* header(uint32_t off, uint32_t n) const {
    return off + n <= std::min(len, copied) ? data + off : nullptr;
  }
};

// nf_log_dump_tcp_header; true when the dump must stop.
bool dump_tcp(Line& m, const Skb& skb, bool fragment, uint32_t offset, uint8_t flags) {
  m.add("PROTO=TCP ");
  if (fragment) return false;
  const uint8_t* th = skb.header(offset, 20);
  if (th == nullptr) {
    m.add("INCOMPLETE [%u bytes] ", skb.len - offset);
    return true;
  }
  m.add("SPT=%u DPT=%u ", be16_at(th), be16_at(th + 2));
  if (flags & log_flag::kTcpSequence) m.add("SEQ=%u ACK=%u ", be32_at(th + 4), be32_at(th + 8));
  m.add("WINDOW=%u ", be16_at(th + 14));
  // TCP_RESERVED_BITS is three bits since Linux 6.x: the fourth is AE (AccECN).
  m.add("RES=0x%02x ", static_cast<uint8_t>((be32_at(th + 12) & 0x0e000000u) >> 22));
  static constexpr struct {
    uint8_t byte, bit;
    const char* name;
  } kFlags[] = {{12, 0x01, "AE "},  {13, 0x80, "CWR "}, {13, 0x40, "ECE "}, {13, 0x20, "URG "}, {13, 0x10, "ACK "},
                {13, 0x08, "PSH "}, {13, 0x04, "RST "}, {13, 0x02, "SYN "}, {13, 0x01, "FIN "}};
  for (const auto& f : kFlags) {
    if (th[f.byte] & f.bit) m.add("%s", f.name);
  }
  m.add("URGP=%u ", be16_at(th + 18));
  const uint32_t doff = (th[12] >> 4) * 4u;
  if ((flags & log_flag::kTcpOptions) && doff > 20) {
    const uint8_t* op = skb.header(offset + 20, doff - 20);
    if (op == nullptr) {
      m.add("OPT (TRUNCATED)");
      return true;
    }
    m.add("OPT (");
    m.add_hex(op, doff - 20);
    m.add(") ");
  }
  return false;
}

// nf_log_dump_udp_header; true when the dump must stop.
bool dump_udp(Line& m, const Skb& skb, uint8_t proto, bool fragment, uint32_t offset) {
  m.add(proto == kProtoUdp ? "PROTO=UDP " : "PROTO=UDPLITE ");
  if (fragment) return false;
  const uint8_t* uh = skb.header(offset, 8);
  if (uh == nullptr) {
    m.add("INCOMPLETE [%u bytes] ", skb.len - offset);
    return true;
  }
  m.add("SPT=%u DPT=%u LEN=%u ", be16_at(uh), be16_at(uh + 2), be16_at(uh + 4));
  return false;
}

// dump_ipv4_packet: the header at `iphoff` (0, or an ICMP error's quote).
void dump_ipv4(Line& m, const LogRecord& rec, const Skb& skb, uint32_t iphoff) {
  const uint8_t* ih = skb.header(iphoff, 20);
  if (ih == nullptr) {
    m.add("TRUNCATED");
    return;
  }
  m.add_ipv4("SRC", ih + 12);
  m.add_ipv4("DST", ih + 16);
  const uint8_t tos = ih[1];
  m.add("LEN=%u TOS=0x%02X PREC=0x%02X TTL=%u ID=%u ", be16_at(ih + 2), tos & 0x1e, tos & 0xe0, ih[8],
        be16_at(ih + 4));
  const uint16_t frag = be16_at(ih + 6);
  if (frag & kIpCe) m.add("CE ");
  if (frag & kIpDf) m.add("DF ");
  if (frag & kIpMf) m.add("MF ");
  if (frag & kIpOffset) m.add("FRAG:%u ", frag & kIpOffset);
  const uint32_t ihl = (ih[0] & 0x0f) * 4u;
  if ((rec.flags & log_flag::kIpOptions) && ihl > 20) {
    const uint8_t* op = skb.header(iphoff + 20, ihl - 20);
    if (op == nullptr) {
      m.add("TRUNCATED");
      return;
    }
    m.add("OPT (");
    m.add_hex(op, ihl - 20);
    m.add(") ");
  }
  const bool later_fragment = (frag & kIpOffset) != 0;
  const uint32_t l4 = iphoff + ihl;
  const uint32_t l4_len = skb.len - l4;
  switch (ih[9]) {
    case kProtoTcp:
      if (dump_tcp(m, skb, later_fragment, l4, rec.flags)) return;
      break;
    case kProtoUdp:
    case kProtoUdpLite:
      if (dump_udp(m, skb, ih[9], later_fragment, l4)) return;
      break;
    case kProtoIcmp: {
      // The bytes each type must have after the IP header (NR_ICMP_TYPES = 18).
      static constexpr uint8_t kRequired[19] = {4, 0, 0, 28, 28, 28, 0, 0, 4, 0, 0, 28, 28, 20, 20, 0, 0, 12, 12};
      m.add("PROTO=ICMP ");
      if (later_fragment) break;
      const uint8_t* ich = skb.header(l4, 8);
      if (ich == nullptr) {
        m.add("INCOMPLETE [%u bytes] ", l4_len);
        break;
      }
      const uint8_t type = ich[0], code = ich[1];
      m.add("TYPE=%u CODE=%u ", type, code);
      if (type <= 18 && kRequired[type] != 0 && l4_len < kRequired[type]) {
        m.add("INCOMPLETE [%u bytes] ", l4_len);
        break;
      }
      switch (type) {
        case 0:  // echo reply
        case 8:  // echo request
          m.add("ID=%u SEQ=%u ", be16_at(ich + 4), be16_at(ich + 6));
          break;
        case 12:  // parameter problem
          m.add("PARAMETER=%u ", ich[4]);
          break;
        case 5:  // redirect
          m.add_ipv4("GATEWAY", ich + 4);
          [[fallthrough]];
        case 3:   // destination unreachable
        case 4:   // source quench
        case 11:  // time exceeded
          if (iphoff == 0) {  // only recurse once
            m.add("[");
            dump_ipv4(m, rec, skb, l4 + 8);
            m.add("] ");
          }
          if (type == 3 && code == 4) m.add("MTU=%u ", be16_at(ich + 6));
          break;
        default:
          break;
      }
      break;
    }
    case kProtoAh: {
      if (later_fragment) break;  // as the kernel: not even PROTO=AH
      m.add("PROTO=AH ");
      const uint8_t* ah = skb.header(l4, 12);
      if (ah == nullptr) {
        m.add("INCOMPLETE [%u bytes] ", l4_len);
        break;
      }
      m.add("SPI=0x%x ", be32_at(ah + 4));
      break;
    }
    case kProtoEsp: {
      m.add("PROTO=ESP ");
      if (later_fragment) break;
      const uint8_t* eh = skb.header(l4, 8);
      if (eh == nullptr) {
        m.add("INCOMPLETE [%u bytes] ", l4_len);
        break;
      }
      m.add("SPI=0x%x ", be32_at(eh));
      break;
    }
    default:
      m.add("PROTO=%u ", ih[9]);
      break;
  }
  if (iphoff == 0 && rec.mark != 0) m.add("MARK=0x%x ", rec.mark);
}

void copy_name(char* to, const char* from, size_t size) {
  const size_t n = from == nullptr ? 0 : strnlen(from, size - 1);
  std::memcpy(to, from, n);
  to[n] = '\0';
}

}  // namespace

void make_log_record(LogRecord& rec, const rules::LogTarget& target, rules::Hook hook, const char* in,
                     const char* out, uint32_t mark, const uint8_t* frame, uint16_t l2_len,
                     const uint8_t* ip_copy, uint16_t copy_len, uint16_t ip_len) {
  rec.level = target.level;
  rec.flags = target.flags;
  rec.hook = hook;
  rec.mark = mark;
  const size_t prefix_len = std::min(target.prefix.size(), LogRecord::kPrefixSize - 1);
  std::memcpy(rec.prefix, target.prefix.data(), prefix_len);
  rec.prefix[prefix_len] = '\0';
  copy_name(rec.in, in, LogRecord::kIfNameSize);
  copy_name(rec.out, out, LogRecord::kIfNameSize);
  // The MAC header as the receiving device has it: addresses and the
  // EtherType of the IP packet (a VLAN tag is the device's, not the header's).
  std::memcpy(rec.mac, frame, 12);
  std::memcpy(rec.mac + 12, frame + l2_len - 2, 2);
  rec.has_vlan = l2_len > 14;
  rec.vlan_tci = rec.has_vlan ? static_cast<uint16_t>(be16_at(frame + 14) & 0x0fff) : 0;
  rec.ip_len = ip_len;
  rec.copied = std::min<uint16_t>(copy_len, LogRecord::kIpBytes);
  if (ip_copy != rec.ip) std::memcpy(rec.ip, ip_copy, rec.copied);  // rte_pktmbuf_read may have copied already
  // Only a forwarded packet (it has an input device): what the router sends
  // leaves with the TTL it was given.
  const bool forwarded = rec.in[0] != '\0';
  if (forwarded && (hook == rules::Hook::kForward || hook == rules::Hook::kPostrouting) && rec.copied > 8 &&
      rec.ip[8] > 0) {
    --rec.ip[8];
  }
}

std::string format_log_record(const LogRecord& rec) {
  Line m;
  // nf_log_dump_packet_common: the prefix runs straight into "IN=".
  m.add("%.*sIN=%.*s OUT=%.*s ", static_cast<int>(LogRecord::kPrefixSize - 1), rec.prefix,
        static_cast<int>(LogRecord::kIfNameSize - 1), rec.in, static_cast<int>(LogRecord::kIfNameSize - 1), rec.out);
  if (rec.in[0] != '\0') {  // dump_mac_header, only with an input device
    const uint8_t* mac = rec.mac;
    if (rec.flags & log_flag::kMacDecode) {
      m.add("MACSRC=%02x:%02x:%02x:%02x:%02x:%02x MACDST=%02x:%02x:%02x:%02x:%02x:%02x ", mac[6], mac[7], mac[8],
            mac[9], mac[10], mac[11], mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
      if (rec.has_vlan) m.add("VPROTO=8100 VID=%u ", rec.vlan_tci);
      m.add("MACPROTO=%04x ", be16_at(mac + 12));
    } else {
      m.add("MAC=%02x", mac[0]);
      for (int i = 1; i < 14; ++i) m.add(":%02x", mac[i]);
      m.add(" ");
    }
  }
  dump_ipv4(m, rec, Skb{rec.ip, rec.ip_len, rec.copied}, 0);
  return m.take();
}

}  // namespace dpgate::dataplane
