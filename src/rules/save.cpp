// Ruleset -> iptables-save text. Every option's form and order follows the
// save functions of iptables 1.8.9's extensions (libxt_*.c / libipt_*.c) as
// the nf_tables backend prints them.
#include "dpgate/rules/save.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "names.hpp"

namespace dpgate::rules {
namespace {

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

// xtables_save_string: bare when only [A-Za-z0-9_-], else quoted with
// '"', '\' and '\'' escaped.
void save_string(std::string& out, const std::string& v) {
  static const char kNoQuote[] =
      "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  out += ' ';
  size_t n = std::strspn(v.c_str(), kNoQuote);
  if (n > 0 && n == v.size()) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '"';
}

// xtables_ipmask_to_numeric: "" for /32, "/N", or "/a.b.c.d".
std::string mask_suffix(uint32_t mask, bool print_32) {
  int cidr = names::mask_to_cidr(mask);
  if (cidr < 0) return "/" + names::ipv4_to_string(mask);
  if (cidr == 32 && !print_32) return "";
  return "/" + std::to_string(cidr);
}

std::string net_text(const Ipv4Net& n, bool print_32) {
  return names::ipv4_to_string(n.addr) + mask_suffix(n.mask, print_32);
}

std::string range_text(const PortRange& r) {
  if (r.lo == r.hi) return std::to_string(r.lo);
  return std::to_string(r.lo) + ":" + std::to_string(r.hi);
}

std::string flag_list(uint16_t bits, const names::Flag* table, size_t n, const char* none) {
  std::string s;
  for (size_t k = 0; k < n; ++k) {
    if (table[k].bit != 0 && (bits & table[k].bit) == table[k].bit &&
        __builtin_popcount(table[k].bit) == 1) {
      if (!s.empty()) s += ',';
      s += table[k].name;
    }
  }
  return s.empty() ? none : s;
}

void inv(std::string& out, bool on) {
  if (on) out += " !";
}

void save_match(std::string& out, const TcpMatch& m) {
  if (m.empty() && m.vanish_if_empty) return;
  out += m.udp ? " -m udp" : " -m tcp";
  if (m.sport) {
    inv(out, m.inv_sport);
    out += " --sport " + range_text(*m.sport);
  }
  if (m.dport) {
    inv(out, m.inv_dport);
    out += " --dport " + range_text(*m.dport);
  }
  if (m.option) {
    inv(out, m.inv_option);
    out += " --tcp-option " + std::to_string(*m.option);
  }
  if (m.flags) {
    inv(out, m.inv_flags);
    out += " --tcp-flags ";
    out += flag_list(m.flags->first, names::kTcpFlags, 6, "NONE");
    out += ' ';
    out += flag_list(m.flags->second, names::kTcpFlags, 6, "NONE");
  }
}

void save_match(std::string& out, const IcmpMatch& m) {
  out += " -m icmp";
  inv(out, m.inv);
  if (m.type == 255 && m.code_lo == 0 && m.code_hi == 255) {
    out += " --icmp-type any";
    return;
  }
  out += " --icmp-type " + std::to_string(m.type);
  if (m.code_lo != 0 || m.code_hi != 255) out += "/" + std::to_string(m.code_lo);
}

void save_match(std::string& out, const MultiportMatch& m) {
  out += " -m multiport";
  inv(out, m.inv);
  out += m.side == MultiportMatch::Side::kSource ? " --sports "
         : m.side == MultiportMatch::Side::kDest ? " --dports "
                                                 : " --ports ";
  for (size_t k = 0; k < m.ports.size(); ++k) {
    if (k) out += ',';
    out += range_text(m.ports[k]);
  }
}

void save_match(std::string& out, const ConntrackMatch& m) {
  if (m.legacy_state) {
    out += " -m state";
    inv(out, m.state.inv);
    out += " --state " + flag_list(*m.state.value, names::kCtStates, 5, "");
    return;
  }
  out += " -m conntrack";
  if (m.state.value) {
    inv(out, m.state.inv);
    out += " --ctstate " + flag_list(*m.state.value, names::kCtStates, names::kCtStateCount, "");
  }
  if (m.proto.value) {
    inv(out, m.proto.inv);
    out += " --ctproto " + std::to_string(*m.proto.value);
  }
  auto net = [&](const ConntrackMatch::Opt<Ipv4Net>& o, const char* name) {
    if (!o.value) return;
    inv(out, o.inv);
    out += std::string(" --") + name + " " + net_text(*o.value, false);
  };
  net(m.orig_src, "ctorigsrc");
  net(m.orig_dst, "ctorigdst");
  net(m.repl_src, "ctreplsrc");
  net(m.repl_dst, "ctrepldst");
  auto port = [&](const ConntrackMatch::Opt<PortRange>& o, const char* name) {
    if (!o.value) return;
    inv(out, o.inv);
    out += std::string(" --") + name + " " + range_text(*o.value);
  };
  port(m.orig_src_port, "ctorigsrcport");
  port(m.orig_dst_port, "ctorigdstport");
  port(m.repl_src_port, "ctreplsrcport");
  port(m.repl_dst_port, "ctrepldstport");
  if (m.status.value) {
    inv(out, m.status.inv);
    out += " --ctstatus " + flag_list(*m.status.value, names::kCtStatuses, names::kCtStatusCount, "NONE");
  }
  if (m.expire.value) {
    inv(out, m.expire.inv);
    out += " --ctexpire " + std::to_string(m.expire.value->first);
    if (m.expire.value->second != m.expire.value->first) {
      out += ":" + std::to_string(m.expire.value->second);
    }
  }
  if (m.dir) out += *m.dir == CtDir::kOriginal ? " --ctdir ORIGINAL" : " --ctdir REPLY";
}

void save_match(std::string& out, const MarkMatch& m) {
  out += m.connmark ? " -m connmark" : " -m mark";
  inv(out, m.inv);
  out += " --mark " + hex(m.value);
  if (m.mask != 0xffffffff) out += "/" + hex(m.mask);
}

void save_match(std::string& out, const StatisticMatch& m) {
  out += " -m statistic";
  if (m.mode == StatisticMatch::Mode::kRandom) {
    out += " --mode random";
    inv(out, m.inv);
    char buf[32];
    std::snprintf(buf, sizeof buf, " --probability %.11f", 1.0 * m.probability / 0x80000000);
    out += buf;
  } else {
    out += " --mode nth";
    inv(out, m.inv);
    out += " --every " + std::to_string(m.every + 1) + " --packet " + std::to_string(m.packet);
  }
}

void save_match(std::string& out, const RecentMatch& m) {
  out += " -m recent";
  inv(out, m.inv);
  switch (m.command) {
    case RecentMatch::Command::kSet: out += " --set"; break;
    case RecentMatch::Command::kRcheck: out += " --rcheck"; break;
    case RecentMatch::Command::kUpdate: out += " --update"; break;
    case RecentMatch::Command::kRemove: out += " --remove"; break;
  }
  if (m.seconds) out += " --seconds " + std::to_string(m.seconds);
  if (m.reap) out += " --reap";
  if (m.hitcount) out += " --hitcount " + std::to_string(m.hitcount);
  if (m.rttl) out += " --rttl";
  out += " --name " + m.name;
  out += " --mask " + names::ipv4_to_string(m.mask);
  out += m.rsource ? " --rsource" : " --rdest";
}

void save_match(std::string& out, const AddrtypeMatch& m) {
  out += " -m addrtype";
  if (m.src) {
    inv(out, m.inv_src);
    out += " --src-type " + flag_list(m.src, names::kAddrTypes, names::kAddrTypeCount, "");
  }
  if (m.dst) {
    inv(out, m.inv_dst);
    out += " --dst-type " + flag_list(m.dst, names::kAddrTypes, names::kAddrTypeCount, "");
  }
  if (m.limit_iface_in) out += " --limit-iface-in";
  if (m.limit_iface_out) out += " --limit-iface-out";
}

void save_match(std::string& out, const CommentMatch& m) {
  out += " -m comment --comment";
  save_string(out, m.text);
}

void save_match(std::string& out, const StringMatch& m) {
  out += " -m string";
  bool is_hex = false;
  for (unsigned char c : m.pattern) is_hex |= !std::isprint(c);
  out += m.inv ? " ! " : " ";
  if (is_hex) {
    out += "--hex-string \"|";
    char buf[4];
    for (unsigned char c : m.pattern) {
      std::snprintf(buf, sizeof buf, "%02x", c);
      out += buf;
    }
    out += "|\"";
  } else {
    out += "--string \"";
    for (char c : m.pattern) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += " --algo " + m.algo;
  if (m.from != 0) out += " --from " + std::to_string(m.from);
  if (m.to != 65535) out += " --to " + std::to_string(m.to);
  if (m.icase) out += " --icase";
}

void save_match(std::string& out, const LimitMatch& m) {
  struct Rate {
    const char* name;
    uint32_t mult;
  };
  static const Rate kRates[] = {{"day", 10000u * 60 * 60 * 24},
                                {"hour", 10000u * 60 * 60},
                                {"min", 10000u * 60},
                                {"sec", 10000u}};
  out += " -m limit --limit";
  size_t i = 1;
  for (; i < 4; ++i) {
    if (m.avg > kRates[i].mult || kRates[i].mult / m.avg < kRates[i].mult % m.avg) break;
  }
  out += " " + std::to_string(kRates[i - 1].mult / m.avg) + "/" + kRates[i - 1].name;
  if (m.burst != 5) out += " --limit-burst " + std::to_string(m.burst);
}

void save_match(std::string& out, const LengthMatch& m) {
  out += " -m length";
  inv(out, m.inv);
  out += " --length " + std::to_string(m.lo);
  if (m.hi != m.lo) out += ":" + std::to_string(m.hi);
}

void save_match(std::string& out, const IprangeMatch& m) {
  out += " -m iprange";
  if (m.src) {
    inv(out, m.inv_src);
    out += " --src-range " + names::ipv4_to_string(m.src->first) + "-" +
           names::ipv4_to_string(m.src->second);
  }
  if (m.dst) {
    inv(out, m.inv_dst);
    out += " --dst-range " + names::ipv4_to_string(m.dst->first) + "-" +
           names::ipv4_to_string(m.dst->second);
  }
}

void save_match(std::string& out, const NfacctMatch& m) {
  // libxt_nfacct prints two spaces before the name.
  out += " -m nfacct --nfacct-name  " + m.name;
}

void save_nat_range(std::string& out, const NatTarget& t) {
  if (t.has_addr) {
    out += names::ipv4_to_string(t.min_addr);
    if (t.max_addr != t.min_addr) out += "-" + names::ipv4_to_string(t.max_addr);
  }
  if (t.has_port) {
    out += ":" + std::to_string(t.min_port);
    if (t.max_port != t.min_port) out += "-" + std::to_string(t.max_port);
    if (t.base_port) out += "/" + std::to_string(t.base_port);
  }
}

void save_target(std::string& out, const Target& target) {
  std::visit(
      [&](const auto& t) {
        using T = std::decay_t<decltype(t)>;
        if constexpr (std::is_same_v<T, NoTarget>) {
        } else if constexpr (std::is_same_v<T, VerdictTarget>) {
          out += t.verdict == Verdict::kAccept ? " -j ACCEPT"
                 : t.verdict == Verdict::kDrop ? " -j DROP"
                                               : " -j RETURN";
        } else if constexpr (std::is_same_v<T, JumpTarget>) {
          out += (t.is_goto ? " -g " : " -j ") + t.chain;
        } else if constexpr (std::is_same_v<T, RejectTarget>) {
          out += std::string(" -j REJECT --reject-with ") + names::reject_name(t.with);
        } else if constexpr (std::is_same_v<T, NatTarget>) {
          switch (t.kind) {
            case NatTarget::Kind::kDnat:
              out += " -j DNAT --to-destination ";
              save_nat_range(out, t);
              break;
            case NatTarget::Kind::kSnat:
              out += " -j SNAT --to-source ";
              save_nat_range(out, t);
              break;
            case NatTarget::Kind::kMasquerade:
              out += " -j MASQUERADE";
              if (t.has_port) {
                out += " --to-ports " + std::to_string(t.min_port);
                if (t.max_port != t.min_port) out += "-" + std::to_string(t.max_port);
              }
              break;
            case NatTarget::Kind::kRedirect:
              out += " -j REDIRECT";
              if (t.has_port) {
                out += " --to-ports " + std::to_string(t.min_port);
                if (t.max_port != t.min_port) out += "-" + std::to_string(t.max_port);
              }
              break;
          }
          if (t.random) out += " --random";
          if (t.random_fully) out += " --random-fully";
          if (t.persistent) out += " --persistent";
        } else if constexpr (std::is_same_v<T, MarkTarget>) {
          out += " -j MARK --set-xmark " + hex(t.value) + "/" + hex(t.mask);
        } else if constexpr (std::is_same_v<T, ConnmarkTarget>) {
          out += " -j CONNMARK";
          switch (t.mode) {
            case ConnmarkTarget::Mode::kSet:
              out += " --set-xmark " + hex(t.ctmark) + "/" + hex(t.ctmask);
              break;
            case ConnmarkTarget::Mode::kSave:
              out += " --save-mark --nfmask " + hex(t.nfmask) + " --ctmask " + hex(t.ctmask);
              break;
            case ConnmarkTarget::Mode::kRestore:
              out += " --restore-mark --nfmask " + hex(t.nfmask) + " --ctmask " + hex(t.ctmask);
              break;
          }
        } else if constexpr (std::is_same_v<T, LogTarget>) {
          out += " -j LOG";
          if (t.has_prefix) {
            out += " --log-prefix";
            save_string(out, t.prefix);
          }
          if (t.level != 4) out += " --log-level " + std::to_string(t.level);
          if (t.flags & 0x01) out += " --log-tcp-sequence";
          if (t.flags & 0x02) out += " --log-tcp-options";
          if (t.flags & 0x04) out += " --log-ip-options";
          if (t.flags & 0x08) out += " --log-uid";
          if (t.flags & 0x20) out += " --log-macdecode";
        } else if constexpr (std::is_same_v<T, NotrackTarget>) {
          out += t.ct_form ? " -j CT --notrack" : " -j NOTRACK";
        }
      },
      target);
}

std::string counters_text(const Counters& c) {
  return "[" + std::to_string(c.packets) + ":" + std::to_string(c.bytes) + "]";
}

}  // namespace

std::string rule_spec_text(const Rule& r) {
  std::string out;
  if (r.src.mask != 0 || r.inv_src) {
    out += r.inv_src ? " ! -s " : " -s ";
    out += net_text(r.src, true);
  }
  if (r.dst.mask != 0 || r.inv_dst) {
    out += r.inv_dst ? " ! -d " : " -d ";
    out += net_text(r.dst, true);
  }
  if (!r.in.empty()) {
    out += r.inv_in ? " ! -i " : " -i ";
    out += r.in.name + (r.in.prefix ? "+" : "");
  }
  if (!r.out.empty()) {
    out += r.inv_out ? " ! -o " : " -o ";
    out += r.out.name + (r.out.prefix ? "+" : "");
  }
  if (r.proto != 0) {
    out += r.inv_proto ? " ! -p " : " -p ";
    out += names::protocol_name(r.proto);
  }
  if (r.fragment) out += r.inv_fragment ? " ! -f" : " -f";
  for (const auto& m : r.matches) {
    std::visit([&](const auto& mm) { save_match(out, mm); }, m);
  }
  save_target(out, r.target);
  return out;
}

std::string save_ruleset(const Ruleset& rs, const SaveOptions& options) {
  static const TableId kOrder[] = {TableId::kMangle, TableId::kRaw, TableId::kFilter,
                                   TableId::kNat};
  const names::LookupCache lookups;
  std::string out;
  for (TableId t : kOrder) {
    const Table& tb = rs.table(t);
    if (!tb.present) continue;
    out += std::string("*") + table_name(t) + "\n";
    std::vector<const Chain*> order;
    for (Hook h : table_hooks(t)) {
      if (const Chain* c = tb.find(hook_name(h))) order.push_back(c);
    }
    std::vector<const Chain*> user;
    for (const auto& c : tb.chains) {
      if (!c.builtin) user.push_back(&c);
    }
    std::sort(user.begin(), user.end(),
              [](const Chain* a, const Chain* b) { return a->name < b->name; });
    order.insert(order.end(), user.begin(), user.end());
    for (const Chain* c : order) {
      out += ":" + c->name + " ";
      if (c->builtin) {
        out += c->policy == Policy::kDrop ? "DROP " : "ACCEPT ";
        out += counters_text(c->counters);
      } else {
        out += "- [0:0]";
      }
      out += "\n";
    }
    for (const Chain* c : order) {
      for (const auto& r : c->rules) {
        if (options.rule_counters) out += counters_text(r.counters.value_or(Counters{})) + " ";
        out += "-A " + c->name + rule_spec_text(r) + "\n";
      }
    }
    out += "COMMIT\n";
  }
  return out;
}

}  // namespace dpgate::rules
