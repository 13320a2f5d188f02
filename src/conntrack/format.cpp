// conntrack -L lines (libnetfilter_conntrack's default output format).
#include "dpgate/conntrack/format.hpp"

#include <cstdio>

#include "dpgate/conntrack/track.hpp"

namespace dpgate::conntrack {

namespace {

const char* proto_name(uint8_t proto) {
  switch (proto) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    default: return "unknown";
  }
}

void append_tuple(std::string& out, const net::FiveTuple& t, uint8_t icmp_type) {
  out += "src=" + net::format_ipv4(net::to_host(t.src.v4())) + " ";
  out += "dst=" + net::format_ipv4(net::to_host(t.dst.v4())) + " ";
  char buf[64];
  if (t.proto == 6 || t.proto == 17) {
    std::snprintf(buf, sizeof(buf), "sport=%u dport=%u ", net::to_host(t.src_port),
                  net::to_host(t.dst_port));
    out += buf;
  } else if (t.proto == 1) {
    std::snprintf(buf, sizeof(buf), "type=%u code=0 id=%u ", icmp_type, net::to_host(t.src_port));
    out += buf;
  }
}

void append_counters(std::string& out, uint64_t packets, uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "packets=%llu bytes=%llu ",
                static_cast<unsigned long long>(packets), static_cast<unsigned long long>(bytes));
  out += buf;
}

}  // namespace

const char* tcp_state_name(TcpState s) {
  static const char* const kNames[kTcpStateCount] = {
      "NONE",     "SYN_SENT", "SYN_RECV",  "ESTABLISHED", "FIN_WAIT",
      "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE",       "SYN_SENT2"};
  const auto i = static_cast<unsigned>(s);
  return i < kTcpStateCount ? kNames[i] : "UNKNOWN";
}

std::string format_conntrack(const FlowInfo& f) {
  std::string out;
  char buf[64];
  if (f.kind == EntryKind::kRedirect) {
    std::snprintf(buf, sizeof(buf), "redirect %-8s %u %u ", proto_name(f.reply.proto),
                  f.reply.proto, f.seconds_left);
    out += buf;
    append_tuple(out, f.reply, f.icmp_type);
    std::snprintf(buf, sizeof(buf), "owner=%u", f.owner);
    out += buf;
    return out;
  }
  std::snprintf(buf, sizeof(buf), "%-8s %u %u ", proto_name(f.orig.proto), f.orig.proto,
                f.seconds_left);
  out += buf;
  if (f.orig.proto == 6) {
    out += tcp_state_name(f.tcp_state);
    out += ' ';
  }
  append_tuple(out, f.orig, f.icmp_type);
  if (f.accounted) append_counters(out, f.packets[0], f.bytes[0]);
  if (!(f.status & status::kSeenReply)) out += "[UNREPLIED] ";
  append_tuple(out, f.reply, icmp_reply_type(f.icmp_type));
  if (f.accounted) append_counters(out, f.packets[1], f.bytes[1]);
  if (f.status & status::kAssured) out += "[ASSURED] ";
  std::snprintf(buf, sizeof(buf), "mark=%u use=1", f.mark);
  out += buf;
  return out;
}

}  // namespace dpgate::conntrack
