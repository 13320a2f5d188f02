// Match and target semantics shared by the interpreter and the Program, so
// the two differ only in how they find the rules to try. Each function cites
// the kernel module whose behaviour it reproduces. Internal to src/rules.
#pragma once

#include <cstring>
#include <string_view>
#include <vector>

#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/packet.hpp"

namespace dpgate::rules::eval {

inline bool iface_matches(const Iface& f, const char* name) {
  std::string_view n(name, strnlen(name, kIfNameSize));
  return f.matches(n);
}

// ipt_do_table's ip_packet_match: addresses, interfaces, protocol, -f.
inline bool header_matches(const Rule& r, const Packet& p) {
  if ((r.src.contains(p.src)) == r.inv_src && (r.src.mask != 0 || r.inv_src)) return false;
  if ((r.dst.contains(p.dst)) == r.inv_dst && (r.dst.mask != 0 || r.inv_dst)) return false;
  if (!r.in.empty() && iface_matches(r.in, p.in_iface) == r.inv_in) return false;
  if (!r.out.empty() && iface_matches(r.out, p.out_iface) == r.inv_out) return false;
  if (r.proto != 0 && (p.proto == r.proto) == r.inv_proto) return false;
  if (r.fragment && p.fragment == r.inv_fragment) return false;
  return true;
}

inline bool in_range(const PortRange& r, uint16_t v) { return v >= r.lo && v <= r.hi; }

struct MatchCtx {
  const Packet& p;
  MatchState& state;
  uint32_t rule_id;
  uint32_t match_index;
};

// xt_tcp / xt_udp: non-first fragments never match.
inline bool match(const TcpMatch& m, const MatchCtx& c) {
  const Packet& p = c.p;
  if (p.fragment) return false;
  if (m.sport && in_range(*m.sport, p.sport) == m.inv_sport) return false;
  if (m.dport && in_range(*m.dport, p.dport) == m.inv_dport) return false;
  if (m.flags && ((p.tcp_flags & m.flags->first) == m.flags->second) == m.inv_flags) return false;
  if (m.option) {
    bool has = (p.tcp_options[*m.option >> 6] >> (*m.option & 63)) & 1;
    if (has == m.inv_option) return false;
  }
  return true;
}

// xt_icmp icmp_type_code_match: type 0xff matches every type.
inline bool match(const IcmpMatch& m, const MatchCtx& c) {
  if (c.p.fragment) return false;
  bool hit = m.type == 0xff ||
             (c.p.icmp_type == m.type && c.p.icmp_code >= m.code_lo && c.p.icmp_code <= m.code_hi);
  return hit != m.inv;
}

inline bool match(const MultiportMatch& m, const MatchCtx& c) {
  if (c.p.fragment) return false;
  bool hit = false;
  for (const auto& r : m.ports) {
    switch (m.side) {
      case MultiportMatch::Side::kSource: hit = in_range(r, c.p.sport); break;
      case MultiportMatch::Side::kDest: hit = in_range(r, c.p.dport); break;
      case MultiportMatch::Side::kEither: hit = in_range(r, c.p.sport) || in_range(r, c.p.dport); break;
    }
    if (hit) break;
  }
  return hit != m.inv;
}

// Whether a conntrack match tests nothing but (at most) --ctstate.
inline bool tests_state_only(const ConntrackMatch& m) {
  return !m.proto.value && !m.orig_src.value && !m.orig_dst.value && !m.repl_src.value &&
         !m.repl_dst.value && !m.orig_src_port.value && !m.orig_dst_port.value &&
         !m.repl_src_port.value && !m.repl_dst_port.value && !m.status.value && !m.expire.value &&
         !m.dir;
}

// xt_conntrack v3 conntrack_mt: without a conntrack entry only a pure
// --ctstate test can match.
inline bool match(const ConntrackMatch& m, const MatchCtx& c) {
  const Packet& p = c.p;
  if (m.state.value && ((p.ct_state & *m.state.value) != 0) == m.state.inv) return false;
  const bool no_ct = (p.ct_state & (ct_state::kInvalid | ct_state::kUntracked)) != 0;
  if (no_ct) return tests_state_only(m) && m.state.value.has_value();
  if (m.dir && (p.ct_dir == *m.dir) == false) return false;
  if (m.proto.value && (p.ct_orig.proto == *m.proto.value) == m.proto.inv) return false;
  auto addr = [](const ConntrackMatch::Opt<Ipv4Net>& o, uint32_t a) {
    return !o.value || o.value->contains(a) != o.inv;
  };
  if (!addr(m.orig_src, p.ct_orig.src) || !addr(m.orig_dst, p.ct_orig.dst) ||
      !addr(m.repl_src, p.ct_reply.src) || !addr(m.repl_dst, p.ct_reply.dst)) {
    return false;
  }
  auto port = [](const ConntrackMatch::Opt<PortRange>& o, uint16_t v) {
    return !o.value || in_range(*o.value, v) != o.inv;
  };
  if (!port(m.orig_src_port, p.ct_orig.sport) || !port(m.orig_dst_port, p.ct_orig.dport) ||
      !port(m.repl_src_port, p.ct_reply.sport) || !port(m.repl_dst_port, p.ct_reply.dport)) {
    return false;
  }
  if (m.status.value) {
    // --ctstatus NONE (0) matches a conntrack with none of the bits.
    bool hit = *m.status.value == 0 ? (p.ct_status & 0xf) == 0 : (p.ct_status & *m.status.value) != 0;
    if (hit == m.status.inv) return false;
  }
  if (m.expire.value) {
    bool hit = p.ct_expire >= m.expire.value->first && p.ct_expire <= m.expire.value->second;
    if (hit == m.expire.inv) return false;
  }
  return true;
}

inline bool match(const MarkMatch& m, const MatchCtx& c) {
  uint32_t v = m.connmark ? c.p.ct_mark : c.p.mark;
  return ((v & m.mask) == m.value) != m.inv;
}

// xt_statistic: random compares a 31-bit value with lround(p * 2^31).
inline bool match(const StatisticMatch& m, const MatchCtx& c) {
  if (m.mode == StatisticMatch::Mode::kRandom) {
    return (c.state.random31() < m.probability) != m.inv;
  }
  return c.state.nth(c.rule_id, c.match_index, m) != m.inv;
}

inline bool match(const RecentMatch& m, const MatchCtx& c) { return c.state.recent(recent_check(m), c.p) != m.inv; }

inline bool match(const AddrtypeMatch& m, const MatchCtx& c) {
  if (m.src && ((c.p.src_type & m.src) != 0) == m.inv_src) return false;
  if (m.dst && ((c.p.dst_type & m.dst) != 0) == m.inv_dst) return false;
  return true;
}

inline bool match(const CommentMatch&, const MatchCtx&) { return true; }
inline bool match(const StringMatch& m, const MatchCtx& c) { return c.state.string(m, c.p) != m.inv; }
inline bool match(const LimitMatch& m, const MatchCtx& c) {
  return c.state.limit(c.rule_id, c.match_index, m);
}
inline bool match(const LengthMatch& m, const MatchCtx& c) {
  return (c.p.length >= m.lo && c.p.length <= m.hi) != m.inv;
}
inline bool match(const IprangeMatch& m, const MatchCtx& c) {
  if (m.src && (c.p.src >= m.src->first && c.p.src <= m.src->second) == m.inv_src) return false;
  if (m.dst && (c.p.dst >= m.dst->first && c.p.dst <= m.dst->second) == m.inv_dst) return false;
  return true;
}
inline bool match(const NfacctMatch& m, const MatchCtx& c) {
  c.state.nfacct(m, c.p);
  return true;
}

inline bool match_one(const Match& m, const MatchCtx& c) {
  return std::visit([&](const auto& mm) { return match(mm, c); }, m);
}

// Whether evaluating this match can change state or depends on it.
inline bool is_stateful(const Match& m) {
  return std::holds_alternative<StatisticMatch>(m) || std::holds_alternative<RecentMatch>(m) ||
         std::holds_alternative<StringMatch>(m) || std::holds_alternative<LimitMatch>(m) ||
         std::holds_alternative<NfacctMatch>(m);
}

// What a target does to the traversal of its table.
enum class Flow : uint8_t { kContinue, kAccept, kDrop, kReject, kReturn, kJump, kGoto };

// Applies a target of rule `rule_id` to the packet and result; returns the
// flow. One overload per target type, so that the Program's compact targets
// run the same code as the interpreter's.
inline Flow apply(const NoTarget&, uint32_t, Packet&, HookResult&) { return Flow::kContinue; }

inline Flow apply(const VerdictTarget& t, uint32_t, Packet&, HookResult&) {
  return t.verdict == Verdict::kAccept ? Flow::kAccept : t.verdict == Verdict::kDrop ? Flow::kDrop : Flow::kReturn;
}

inline Flow apply(const JumpTarget& t, uint32_t, Packet&, HookResult&) {
  return t.is_goto ? Flow::kGoto : Flow::kJump;
}

inline Flow apply(const RejectTarget& t, uint32_t, Packet&, HookResult& res) {
  res.reject = t.with;
  return Flow::kReject;
}

// nf_nat: the binding is made and the nat table stops (NF_ACCEPT). Later
// tables of the same hook see the translated packet.
inline Flow apply(const NatTarget& t, uint32_t, Packet& p, HookResult& res) {
  if (t.kind == NatTarget::Kind::kDnat || t.kind == NatTarget::Kind::kRedirect) {
    res.has_dnat = true;
    res.dnat = t;
    if (t.has_addr) p.dst = t.min_addr;
    if (t.has_port) p.dport = t.min_port;
    p.ct_state |= ct_state::kDnat;
  } else {
    res.has_snat = true;
    res.snat = t;
    if (t.has_addr) p.src = t.min_addr;
    if (t.has_port) p.sport = t.min_port;
    p.ct_state |= ct_state::kSnat;
  }
  return Flow::kAccept;
}

inline Flow apply(const MarkTarget& t, uint32_t, Packet& p, HookResult& res) {
  p.mark = (p.mark & ~t.mask) ^ t.value;  // xt_MARK v2
  res.mark = p.mark;
  return Flow::kContinue;
}

// xt_CONNMARK v1
inline Flow apply(const ConnmarkTarget& t, uint32_t, Packet& p, HookResult& res) {
  switch (t.mode) {
    case ConnmarkTarget::Mode::kSet:
      p.ct_mark = (p.ct_mark & ~t.ctmask) ^ t.ctmark;
      break;
    case ConnmarkTarget::Mode::kSave:
      p.ct_mark = (p.ct_mark & ~t.ctmask) ^ (p.mark & t.nfmask);
      break;
    case ConnmarkTarget::Mode::kRestore:
      p.mark = (p.mark & ~t.nfmask) ^ (p.ct_mark & t.ctmask);
      break;
  }
  res.mark = p.mark;
  res.ct_mark = p.ct_mark;
  return Flow::kContinue;
}

// xt_LOG: log the packet as it is now, then XT_CONTINUE. `t` must outlive
// the result (it points into the Ruleset or Program).
inline Flow apply(const LogTarget& t, uint32_t rule_id, Packet& p, HookResult& res) {
  res.add_log(rule_id, p.mark, t);
  return Flow::kContinue;
}

inline Flow apply(const NotrackTarget&, uint32_t, Packet& p, HookResult& res) {
  res.notrack = true;
  p.ct_state = ct_state::kUntracked;
  return Flow::kContinue;
}

inline Flow apply_target(const Target& t, uint32_t rule_id, Packet& p, HookResult& res) {
  return std::visit([&](const auto& tt) { return apply(tt, rule_id, p, res); }, t);
}

// The nat table is consulted only for a connection's first packet.
inline bool nat_skipped(const Packet& p) { return !walks_nat(p.ct_state, p.ct_confirmed); }

// Runs `count` tables of a hook in priority order, `table_of(k)` naming the
// k-th: `walk(k, packet, result)` traverses its built-in chain and returns
// the table's verdict (kAccept: on to the next table). The nat table is
// consulted only for a connection's first packet. In place: `p` is
// rewritten by the targets as the tables run, `res` is overwritten (the
// data plane's form: nothing copied). The interpreter runs every table of
// hook_tables(); the Program only those its ruleset has.
template <class TableOf, class Walk>
void run_tables_in_place(uint32_t count, TableOf&& table_of, Packet& p, HookResult& res, Walk&& walk) {
  res.reset(p.mark, p.ct_mark);
  for (uint32_t k = 0; k < count; ++k) {
    if (table_of(k) == TableId::kNat && nat_skipped(p)) continue;
    const Action verdict = walk(k, p, res);
    if (verdict != Action::kAccept) {
      res.action = verdict;
      return;
    }
  }
  res.action = Action::kAccept;
}

// The verdict a table's traversal ended with: DROP and REJECT end the hook.
inline Action table_verdict(Flow f) {
  return f == Flow::kDrop ? Action::kDrop : f == Flow::kReject ? Action::kReject : Action::kAccept;
}

// run_tables_in_place over every table of the hook; `walk(table, packet,
// result)` returns kAccept, kDrop or kReject.
template <class Walk>
void run_hook_in_place(Hook hook, Packet& p, HookResult& res, Walk&& walk) {
  const std::vector<TableId>& tables = hook_tables(hook);
  run_tables_in_place(
      uint32_t(tables.size()), [&](uint32_t k) { return tables[k]; }, p, res,
      [&](uint32_t k, Packet& q, HookResult& r) { return table_verdict(walk(tables[k], q, r)); });
}

template <class Walk>
HookResult run_hook(Hook hook, const Packet& in, Walk&& walk) {
  Packet p = in;
  HookResult res;
  run_hook_in_place(hook, p, res, walk);
  return res;
}

}  // namespace dpgate::rules::eval
