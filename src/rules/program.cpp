// Ruleset -> Program, and the Program's evaluation (see program.hpp).
//
// Why reordering is safe where the compiler does it:
// - hash segment: consecutive rules whose only conditions are an exact
//   (dst/32,) proto, dport with distinct keys; a packet can match at most
//   one of them, and nothing the rule's target does (marks, jumps that
//   return) changes dst/proto/dport within the table, so after it the rest
//   of the segment cannot match either.
// - classifier segment: a prefilter over header fields (and tcp/udp ports
//   when that match comes before every stateful match of the rule). A rule
//   it excludes would have failed before any stateful match ran, so the
//   candidates, verified in order, see exactly the interpreter's calls.
// - string pruning in a classifier segment: a rule whose string match comes
//   after pure matches only (guard_pattern) fails, with no side effect, on
//   a packet without its pattern, so one scan of the payload may drop it
//   from the candidates. Every other candidate is still verified in order.
#include "dpgate/rules/program.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <new>
#include <cstring>
#include <map>
#include <set>
#include <tuple>
#include <type_traits>

#include "dpgate/rules/bound_search.hpp"
#include "eval.hpp"
#include "names.hpp"

namespace dpgate::rules {
namespace {

constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ull;

uint64_t hash_key(bool with_dst, uint32_t dst, uint8_t proto, uint16_t dport) {
  uint64_t k = (uint64_t(proto) << 16) | dport;
  if (with_dst) k |= uint64_t(dst) << 24;
  return k;
}

// Fibonacci hashing: the product's top 64 - `shift` bits, the only ones
// every bit of the key reaches (the address's first octet sits at bits
// 48-55; bits 32 and up of the product, taken before, left keys that differ
// only there in one slot). Consecutive addresses still fall one slot apart.
uint32_t hash_slot(uint64_t key, uint8_t shift) {
  return uint32_t((key * kHashMul) >> shift);
}

// The key of a rule that tests only exact dst/32 (optional), proto tcp/udp
// and one dport, or nullopt.
struct ExactShape {
  bool with_dst;
  uint64_t key;
};
std::optional<ExactShape> exact_shape(const Rule& r) {
  if (r.src.mask != 0 || r.inv_src || r.inv_dst || !r.in.empty() || !r.out.empty() ||
      r.inv_proto || r.fragment) {
    return std::nullopt;
  }
  if (r.proto != 6 && r.proto != 17) return std::nullopt;
  bool with_dst = r.dst.mask == 0xffffffff;
  if (!with_dst && r.dst.mask != 0) return std::nullopt;
  const TcpMatch* port = nullptr;
  for (const auto& m : r.matches) {
    if (std::holds_alternative<CommentMatch>(m)) continue;
    const auto* t = std::get_if<TcpMatch>(&m);
    if (t == nullptr || port != nullptr) return std::nullopt;
    port = t;
  }
  if (port == nullptr || !port->dport || port->inv_dport || port->dport->lo != port->dport->hi ||
      port->sport || port->flags || port->option) {
    return std::nullopt;
  }
  return ExactShape{with_dst, hash_key(with_dst, r.dst.addr, r.proto, port->dport->lo)};
}

// True when match `m` of rule `r`, with only comments before it, tests
// nothing but what the rule's header can: -m tcp or -m udp without an
// option fails a later fragment and passes everything else (xt_tcp,
// xt_udp), which is "! -f". The header is tested before the first match, so
// the match may become that flag only when no match with a side effect
// (statistic, recent, limit) runs before it. Not under "-f": that rule can
// match nothing, and keeps its match to say so. kube-proxy's KUBE-SEP DNAT
// rules (-p tcp -m tcp -j DNAT) then read no match line.
bool header_only(const Rule& r, const Match& m) {
  const auto* port = std::get_if<TcpMatch>(&m);
  return port != nullptr && port->empty() && !(r.fragment && !r.inv_fragment);
}

// The largest value of each classifier field: src, dst, proto, sport, dport.
constexpr uint32_t kFieldMax[Program::kFields] = {0xffffffffu, 0xffffffffu, 255, 65535, 65535};

// A rule's accepted values on one classifier field, as closed intervals.
using Intervals = std::vector<std::pair<uint32_t, uint32_t>>;

Intervals complement(const Intervals& in, uint32_t max) {
  Intervals out;
  uint64_t next = 0;
  for (auto [lo, hi] : in) {
    if (lo > next) out.push_back({uint32_t(next), lo - 1});
    next = uint64_t(hi) + 1;
  }
  if (next <= max) out.push_back({uint32_t(next), max});
  return out;
}

Intervals prefix_intervals(const Ipv4Net& n, bool inv) {
  if (n.mask == 0 && !inv) return {{0, 0xffffffffu}};
  if (names::mask_to_cidr(n.mask) < 0) return {{0, 0xffffffffu}};  // dotted mask: verified later
  uint32_t lo = n.addr & n.mask, hi = lo | ~n.mask;
  Intervals in{{lo, hi}};
  return inv ? complement(in, 0xffffffffu) : in;
}

std::array<Intervals, Program::kFields> rule_fields(const Rule& r) {
  std::array<Intervals, Program::kFields> f;
  f[0] = prefix_intervals(r.src, r.inv_src);
  f[1] = prefix_intervals(r.dst, r.inv_dst);
  if (r.proto == 0) {
    f[2] = {{0, 255}};
  } else {
    Intervals p{{r.proto, r.proto}};
    f[2] = r.inv_proto ? complement(p, 255) : p;
  }
  f[3] = {{0, 65535}};
  f[4] = {{0, 65535}};
  // Ports from the first tcp/udp match, if no stateful match precedes it.
  if (!r.inv_proto && (r.proto == 6 || r.proto == 17)) {
    for (const auto& m : r.matches) {
      if (eval::is_stateful(m)) break;
      if (const auto* t = std::get_if<TcpMatch>(&m)) {
        if (t->sport && t->sport->lo <= t->sport->hi) {
          Intervals s{{t->sport->lo, t->sport->hi}};
          f[3] = t->inv_sport ? complement(s, 65535) : s;
        }
        if (t->dport && t->dport->lo <= t->dport->hi) {
          Intervals d{{t->dport->lo, t->dport->hi}};
          f[4] = t->inv_dport ? complement(d, 65535) : d;
        }
        break;
      }
    }
  }
  return f;
}

// Whether the classifier's fields of every packet select the rule.
bool selects_every_packet(const Rule& r) {
  const std::array<Intervals, Program::kFields> f = rule_fields(r);
  for (int i = 0; i < Program::kFields; ++i) {
    if (f[size_t(i)].size() != 1 || f[size_t(i)][0].first != 0 ||
        f[size_t(i)][0].second != kFieldMax[i]) {
      return false;
    }
  }
  return true;
}

// Whether evaluating the match can change anything (a random draw, an nth
// counter, a recent list, a token bucket, an nfacct counter) and so must
// happen whenever the interpreter would reach it. A match type added later
// counts as having side effects until it is listed here.
bool has_side_effects(const Match& m) {
  return std::visit(
      [](const auto& mm) {
        using T = std::decay_t<decltype(mm)>;
        return !(std::is_same_v<T, TcpMatch> || std::is_same_v<T, IcmpMatch> ||
                 std::is_same_v<T, MultiportMatch> || std::is_same_v<T, ConntrackMatch> ||
                 std::is_same_v<T, MarkMatch> || std::is_same_v<T, AddrtypeMatch> ||
                 std::is_same_v<T, CommentMatch> || std::is_same_v<T, StringMatch> ||
                 std::is_same_v<T, LengthMatch> || std::is_same_v<T, IprangeMatch>);
      },
      m);
}

// The pattern id of a rule's first non-negated string match when no match
// before it has side effects, else kNone. On a packet whose payload lacks
// that pattern the interpreter runs the rule's pure matches up to the string
// match at most and stops there (ipt_do_table: a rule's matches in order,
// up to the first that fails), so skipping the rule changes nothing. A
// statistic, recent, limit or nfacct match before it must still run: such a
// rule is never skipped.
uint32_t guard_pattern(const Program::CompiledMatch* begin, const Program::CompiledMatch* end,
                       const std::vector<Program::ColdMatch>& cold) {
  for (const Program::CompiledMatch* m = begin; m != end; ++m) {
    switch (m->kind) {
      case Program::MatchKind::kTcp:
      case Program::MatchKind::kMark:
      case Program::MatchKind::kCtState:
        continue;
      case Program::MatchKind::kStatistic:
      case Program::MatchKind::kRecent:
        return Program::kNone;
      case Program::MatchKind::kCold:
        break;
    }
    const Program::ColdMatch& cm = cold[m->cold];
    if (has_side_effects(cm.match)) return Program::kNone;
    if (cm.pattern != Program::kNone && !std::get<StringMatch>(cm.match).inv) return cm.pattern;
  }
  return Program::kNone;
}

// The compact form of a target; LOG, CONNMARK and NOTRACK go to `cold`.
// A jump's chain is filled in by the caller.
static_assert(sizeof(Program::CompiledRule) == 64, "a rule is one cache line");
static_assert(sizeof(Program::CompiledMatch) == 32, "two matches a line");

Program::CompiledTarget compile_target(const Target& t, std::vector<Target>& cold) {
  using Kind = Program::TargetKind;
  Program::CompiledTarget ct;
  if (std::holds_alternative<NoTarget>(t)) {
    ct.kind = Kind::kContinue;
  } else if (const auto* v = std::get_if<VerdictTarget>(&t)) {
    ct.kind = v->verdict == Verdict::kAccept ? Kind::kAccept : v->verdict == Verdict::kDrop ? Kind::kDrop : Kind::kReturn;
  } else if (const auto* j = std::get_if<JumpTarget>(&t)) {
    ct.kind = j->is_goto ? Kind::kGoto : Kind::kJump;
    ct.data.jump = Program::JumpData{};
  } else if (const auto* r = std::get_if<RejectTarget>(&t)) {
    ct.kind = Kind::kReject;
    ct.data.reject = *r;
  } else if (const auto* n = std::get_if<NatTarget>(&t)) {
    ct.kind = Kind::kNat;
    ct.data.nat = *n;
  } else if (const auto* m = std::get_if<MarkTarget>(&t)) {
    ct.kind = Kind::kMark;
    ct.data.mark = *m;
  } else {
    ct.kind = Kind::kCold;
    ct.data.cold = uint32_t(cold.size());
    cold.push_back(t);
  }
  return ct;
}

}  // namespace

uint64_t fold_string_pattern(uint64_t fingerprint, const std::string& bytes, uint16_t from, uint16_t to,
                             bool icase) {
  // FNV-1a over the length, the bytes and the options.
  uint64_t h = fingerprint ^ 0xcbf29ce484222325ull;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
  mix(bytes.size());
  for (char c : bytes) mix(uint8_t(c));
  mix((uint64_t{from} << 32) | (uint64_t{to} << 1) | uint64_t{icase});
  return h;
}

Expected<Program> compile_ruleset(const Ruleset& rs, const CompileOptions& opt) {
  Program prog;
  const RuleIds ids = rule_ids(rs);
  for (auto& row : prog.base_) row.fill(Program::kNone);
  const uint32_t max_classifier_rules = std::min(opt.max_classifier_rules, Program::kMaxClassifierRules);
  // Payload patterns by content, numbered in order of first use.
  std::map<std::tuple<std::string, uint16_t, uint16_t, bool>, uint32_t> pattern_ids;
  // (pattern id, rule) of every string-guarded classified rule.
  std::vector<std::pair<uint32_t, uint32_t>> guards;

  for (int ti = 0; ti < kTableCount; ++ti) {
    const Table& tb = rs.tables[size_t(ti)];
    if (!tb.present) continue;
    const uint32_t chain_base = uint32_t(prog.chains_.size());
    const uint32_t table_rule_begin = uint32_t(prog.rules_.size());
    const size_t table_slot_begin = prog.slots_.size();
    const ChainIndex chain_index(tb);
    // The chain each rule jumps to (its index in tb.chains), kNone for other targets,
    // the table's rules in order.
    std::vector<uint32_t> jump_to;
    std::vector<uint32_t> first_rule(tb.chains.size() + 1, 0);
    for (size_t c = 0; c < tb.chains.size(); ++c) {
      first_rule[c] = uint32_t(jump_to.size());
      for (const auto& r : tb.chains[c].rules) {
        const auto* j = std::get_if<JumpTarget>(&r.target);
        const uint32_t to = j ? chain_index.find(j->chain) : Program::kNone;
        if (to == chain_index.size()) return Error{r.pos, "expected a declared chain but found jump to '" + j->chain + "'"};
        jump_to.push_back(to);
      }
    }
    first_rule[tb.chains.size()] = uint32_t(jump_to.size());

    // Depth of the jump graph must fit the fixed stack (the parser rejects
    // loops).
    std::vector<int> depth(tb.chains.size(), -1);
    auto depth_of = [&](auto&& self, size_t c) -> int {
      if (depth[c] >= 0) return depth[c];
      int d = 0;
      for (uint32_t r = first_rule[c]; r < first_rule[c + 1]; ++r) {
        if (jump_to[r] != Program::kNone) d = std::max(d, 1 + self(self, jump_to[r]));
      }
      return depth[c] = d;
    };
    for (size_t c = 0; c < tb.chains.size(); ++c) {
      if (depth_of(depth_of, c) >= int(Program::kMaxDepth)) {
        return Error{tb.chains[c].pos, "expected jumps nested at most " + std::to_string(Program::kMaxDepth) +
                                           " deep but chain '" + tb.chains[c].name + "' goes deeper"};
      }
    }

    // Chains are compiled in chain_layout() order, which rule ids follow:
    // compiled chain chain_base + pos is the table's chain layout[pos].
    const std::vector<uint32_t>& layout = ids.layout[size_t(ti)];
    std::vector<uint32_t> pos_of(layout.size());
    for (uint32_t pos = 0; pos < layout.size(); ++pos) pos_of[layout[pos]] = pos;
    for (uint32_t pos = 0; pos < layout.size(); ++pos) {
      const uint32_t c = layout[pos];
      const Chain& ch = tb.chains[c];
      Program::CompiledChain cc;
      cc.policy = ch.policy;
      cc.rule_begin = uint32_t(prog.rules_.size());
      cc.match_begin = uint32_t(prog.matches_.size());
      cc.cold_begin = uint32_t(prog.cold_matches_.size());
      if (ch.builtin) prog.base_[size_t(ti)][size_t(*ch.builtin)] = chain_base + pos;
      for (size_t k = 0; k < ch.rules.size(); ++k) {
        const Rule& r = ch.rules[k];
        if (ids.base[size_t(ti)][c] + uint32_t(k) != uint32_t(prog.rules_.size())) {
          return Error{r.pos, "internal: rule ids and Program order differ"};
        }
        Program::CompiledRule& cr = prog.rules_.emplace_back();
        cr.src = r.src.addr & r.src.mask;
        cr.src_mask = r.src.mask;
        cr.dst = r.dst.addr & r.dst.mask;
        cr.dst_mask = r.dst.mask;
        cr.proto = r.proto;
        if (r.inv_src) cr.flags |= Program::kHInvSrc;
        if (r.inv_dst) cr.flags |= Program::kHInvDst;
        if (!r.in.empty() || !r.out.empty()) {
          Program::Ifaces& f = prog.ifaces_.emplace_back();
          cr.iface = uint32_t(prog.ifaces_.size() - 1);
          if (!r.in.empty()) {
            cr.flags |= Program::kHIn | (r.in.prefix ? Program::kHInPrefix : 0) | (r.inv_in ? Program::kHInvIn : 0);
            std::memcpy(f.in, r.in.name.data(), r.in.name.size());
            f.in_len = uint8_t(r.in.name.size());
          }
          if (!r.out.empty()) {
            cr.flags |= Program::kHOut | (r.out.prefix ? Program::kHOutPrefix : 0) | (r.inv_out ? Program::kHInvOut : 0);
            std::memcpy(f.out, r.out.name.data(), r.out.name.size());
            f.out_len = uint8_t(r.out.name.size());
          }
        }
        if (r.inv_proto) cr.flags |= Program::kHInvProto;
        if (r.fragment) cr.flags |= Program::kHFrag | (r.inv_fragment ? Program::kHInvFrag : 0);
        cr.match_begin = uint32_t(prog.matches_.size());
        bool only_comments_before = true;
        for (uint32_t m = 0; m < r.matches.size(); ++m) {
          if (std::holds_alternative<CommentMatch>(r.matches[m])) continue;
          if (only_comments_before && header_only(r, r.matches[m])) {
            cr.flags |= Program::kHFrag | Program::kHInvFrag;
            prog.stats_.header_only_matches++;
            continue;
          }
          only_comments_before = false;
          Program::CompiledMatch& cm = prog.matches_.emplace_back();
          cm.index = uint16_t(m);
          const auto* tcp = std::get_if<TcpMatch>(&r.matches[m]);
          const auto* stat = std::get_if<StatisticMatch>(&r.matches[m]);
          const auto* mark = std::get_if<MarkMatch>(&r.matches[m]);
          const auto* recent = std::get_if<RecentMatch>(&r.matches[m]);
          const auto* ct = std::get_if<ConntrackMatch>(&r.matches[m]);
          if (m > 0xffff) {
            // Kept whole below: its position does not fit the compact form.
          } else if (tcp != nullptr) {
            cm.kind = Program::MatchKind::kTcp;
            cm.data.tcp = *tcp;
            continue;
          } else if (stat != nullptr) {
            cm.kind = Program::MatchKind::kStatistic;
            cm.data.statistic = *stat;
            continue;
          } else if (mark != nullptr) {
            cm.kind = Program::MatchKind::kMark;
            cm.data.mark = *mark;
            continue;
          } else if (recent != nullptr) {
            cm.kind = Program::MatchKind::kRecent;
            cm.inv = recent->inv;
            cm.data.recent = recent_check(*recent);
            continue;
          } else if (ct != nullptr && ct->state.value && eval::tests_state_only(*ct)) {
            // --ctstate alone: eval::match()'s first test is all it does
            // (a packet without a conntrack passes what its bits pass).
            cm.kind = Program::MatchKind::kCtState;
            cm.inv = ct->state.inv;
            cm.data.ct_states = *ct->state.value;
            continue;
          }
          cm.kind = Program::MatchKind::kCold;
          cm.cold = uint32_t(prog.cold_matches_.size());
          Program::ColdMatch& cold = prog.cold_matches_.emplace_back(Program::ColdMatch{r.matches[m], m});
          if (const auto* str = std::get_if<StringMatch>(&r.matches[m])) {
            const auto [it, fresh] = pattern_ids.try_emplace({str->pattern, str->from, str->to, str->icase},
                                                             uint32_t(prog.strings_.patterns.size()));
            if (fresh) {
              prog.strings_.patterns.push_back(*str);
              prog.strings_.patterns.back().inv = false;
            }
            cold.pattern = it->second;
          }
        }
        if (prog.matches_.size() - cr.match_begin > 0xffff) {
          return Error{r.pos, "expected at most 65535 matches in a rule"};
        }
        cr.match_count = uint16_t(prog.matches_.size() - cr.match_begin);
        cr.target = compile_target(r.target, prog.targets_);
        if (jump_to[first_rule[c] + k] != Program::kNone) {
          cr.target.data.jump.chain = chain_base + pos_of[jump_to[first_rule[c] + k]];
        }
      }
      cc.rule_end = uint32_t(prog.rules_.size());
      cc.match_end = uint32_t(prog.matches_.size());
      cc.cold_end = uint32_t(prog.cold_matches_.size());
      prog.chains_.push_back(cc);

      // Segments of this chain.
      size_t k = 0;
      while (k < ch.rules.size()) {
        const uint32_t abs = cc.rule_begin + uint32_t(k);
        // Longest run of exact-match rules with one shape and distinct keys.
        auto exact_run = [&](size_t from, size_t limit, std::vector<uint64_t>* keys,
                             std::optional<bool>* shape) {
          std::set<uint64_t> seen;
          std::optional<bool> wd;
          size_t n = 0;
          while (from + n < ch.rules.size() && n < limit) {
            auto s = exact_shape(ch.rules[from + n]);
            if (!s || (wd && *wd != s->with_dst) || !seen.insert(s->key).second) break;
            wd = s->with_dst;
            if (keys) keys->push_back(s->key);
            ++n;
          }
          if (shape) *shape = wd;
          return n;
        };
        std::vector<uint64_t> keys;
        std::optional<bool> with_dst;
        size_t run = opt.enable_hash ? exact_run(k, ch.rules.size(), &keys, &with_dst) : 0;
        if (run >= opt.min_hash_run) {
          Program::HashIndex hi;
          hi.with_dst = *with_dst;
          // The fewest slots (a power of two) that keep the load at or
          // below 5/8. A new connection's lookup is a random read of this
          // array, and on a host whose page walks are dear (a VM: nested
          // paging, no huge pages in the TLB) its page counts more than the
          // probes: at 10 000 services 512 KiB (load 0.61, 1.1 probes on
          // kube-proxy's consecutive cluster IPs, ~1.8 on random ones) took
          // ~15 % off a connection's cycles against 1 MiB (load 0.31).
          uint32_t slots = 4;
          while (slots * 5 < run * 8) slots <<= 1;
          hi.mask = slots - 1;
          hi.shift = uint8_t(64 - std::countr_zero(slots));
          hi.slot_begin = uint32_t(prog.slots_.size());
          prog.slots_.resize(prog.slots_.size() + slots);
          for (size_t q = 0; q < run; ++q) {
            uint32_t s = hash_slot(keys[q], hi.shift), probes = 1;
            for (; prog.slots_[hi.slot_begin + s].rule != Program::kNone; ++probes) s = (s + 1) & hi.mask;
            prog.stats_.hash_max_probes = std::max(prog.stats_.hash_max_probes, probes);
            prog.slots_[hi.slot_begin + s].key = keys[q];
            prog.slots_[hi.slot_begin + s].rule = abs + uint32_t(q);
          }
          prog.segments_.push_back({Program::SegmentKind::kHash, abs, abs + uint32_t(run),
                                    uint32_t(prog.hashes_.size())});
          prog.hashes_.push_back(hi);
          prog.stats_.hash_segments++;
          prog.stats_.hashed_rules += uint32_t(run);
          k += run;
          continue;
        }
        // General run until the next hashable run or the chain's end.
        size_t gen = 0;
        while (k + gen < ch.rules.size() && gen < max_classifier_rules) {
          if (opt.enable_hash && gen > 0 &&
              exact_run(k + gen, opt.min_hash_run, nullptr, nullptr) >= opt.min_hash_run) {
            break;
          }
          ++gen;
        }
        // Rules at the run's head that every packet's fields select, and that
        // no payload pattern guards, are tried on their own: the classifier
        // would only add its field lookups before the same test. A stateful
        // firewall's first rule (-m conntrack --ctstate ESTABLISHED) is one,
        // and it ends the walk of most packets.
        // The pattern id guarding rule k + q of the run, or kNone.
        auto guard_of = [&](size_t q) {
          const Program::CompiledRule& cr = prog.rules_[abs + q];
          return guard_pattern(prog.matches_.data() + cr.match_begin,
                               prog.matches_.data() + cr.match_begin + cr.match_count, prog.cold_matches_);
        };
        size_t head = 0;
        while (opt.enable_classifier && head < gen && selects_every_packet(ch.rules[k + head]) &&
               guard_of(head) == Program::kNone) {
          ++head;
        }
        if (head > 0 && gen >= opt.min_classifier_run) {
          prog.stats_.linear_rules += uint32_t(head);
          k += head;
          continue;
        }
        if (opt.enable_classifier && gen >= opt.min_classifier_run) {
          Program::Classifier cl;
          cl.words = uint32_t((gen + 63) / 64);
          std::vector<std::array<Intervals, Program::kFields>> fields;
          for (size_t q = 0; q < gen; ++q) fields.push_back(rule_fields(ch.rules[k + q]));
          for (int f = 0; f < Program::kFields; ++f) {
            std::vector<uint32_t> b{0};
            for (const auto& rf : fields) {
              for (auto [lo, hi] : rf[size_t(f)]) {
                b.push_back(lo);
                if (hi < kFieldMax[f]) b.push_back(hi + 1);
              }
            }
            std::sort(b.begin(), b.end());
            b.erase(std::unique(b.begin(), b.end()), b.end());
            Program::ClassField cf;
            cf.bound_begin = uint32_t(prog.bounds_.size());
            cf.bound_count = uint32_t(b.size());
            cf.row_begin = uint32_t(prog.rows_.size());
            prog.bounds_.insert(prog.bounds_.end(), b.begin(), b.end());
            // The lookup reads whole windows: slack after the field's bounds.
            prog.bounds_.insert(prog.bounds_.end(), bound_search::kWindow, 0xffffffffu);
            prog.rows_.resize(prog.rows_.size() + b.size() * cl.words, 0);
            for (size_t q = 0; q < gen; ++q) {
              for (auto [lo, hi] : fields[q][size_t(f)]) {
                size_t from = size_t(std::lower_bound(b.begin(), b.end(), lo) - b.begin());
                for (size_t e = from; e < b.size() && b[e] <= hi; ++e) {
                  prog.rows_[cf.row_begin + e * cl.words + q / 64] |= uint64_t(1) << (q % 64);
                }
              }
            }
            cl.fields[size_t(f)] = cf;
          }
          std::vector<uint64_t> guarded(cl.words, 0);
          uint32_t guarded_count = 0;
          for (size_t q = 0; q < gen; ++q) {
            const uint32_t id = guard_of(q);
            if (id == Program::kNone) continue;
            guarded[q / 64] |= uint64_t(1) << (q % 64);
            guards.push_back({id, abs + uint32_t(q)});
            cl.pattern_lo = guarded_count == 0 ? id : std::min(cl.pattern_lo, id);
            cl.pattern_hi = guarded_count == 0 ? id : std::max(cl.pattern_hi, id);
            ++guarded_count;
          }
          if (guarded_count > 0) {
            cl.guarded_row = uint32_t(prog.rows_.size());
            prog.rows_.insert(prog.rows_.end(), guarded.begin(), guarded.end());
            prog.stats_.string_guarded_rules += guarded_count;
          }
          if (guarded_count == gen) {
            cl.all_guarded = true;
            prog.stats_.string_guarded_segments++;
          }
          prog.segments_.push_back({Program::SegmentKind::kClassifier, abs, abs + uint32_t(gen),
                                    uint32_t(prog.classifiers_.size())});
          prog.classifiers_.push_back(cl);
          prog.stats_.classifier_segments++;
          prog.stats_.classified_rules += uint32_t(gen);
        } else {
          prog.stats_.linear_rules += uint32_t(gen);
        }
        k += gen;
      }
    }
    // Jumps carry where their chain lies (chains may be declared later).
    for (uint32_t r = table_rule_begin; r < prog.rules_.size(); ++r) {
      Program::CompiledTarget& t = prog.rules_[r].target;
      if (t.kind != Program::TargetKind::kJump && t.kind != Program::TargetKind::kGoto) continue;
      const Program::CompiledChain& to = prog.chains_[t.data.jump.chain];
      t.data.jump.rule_begin = to.rule_begin;
      t.data.jump.rule_end = to.rule_end;
      t.data.jump.match_begin = to.match_begin;
      t.data.jump.match_end = to.match_end;
      t.data.jump.cold_begin = to.cold_begin != to.cold_end ? to.cold_begin : Program::kNone;
    }
    for (size_t k = table_slot_begin; k < prog.slots_.size(); ++k) {
      Program::HashSlot& e = prog.slots_[k];
      if (e.rule == Program::kNone || prog.rules_[e.rule].target.kind != Program::TargetKind::kJump) continue;
      const Program::JumpData& j = prog.rules_[e.rule].target.data.jump;
      e.chain = j.chain;
      e.rule_begin = j.rule_begin;
      e.rule_end = j.rule_end;
      e.match_begin = j.match_begin;
      e.cold_begin = j.cold_begin;
    }
  }
  // A rule of a hash or classifier run is reached through its segment; a
  // linear rule (segment kNone) is tried on its own.
  for (uint32_t s = 0; s < prog.segments_.size(); ++s) {
    for (uint32_t r = prog.segments_[s].begin; r < prog.segments_[s].end; ++r) prog.rules_[r].segment = s;
  }
  // Each hook's lookahead: the first hash segments met walking its tables'
  // base chains and, depth first, the chains their linear rules jump to (a
  // hash segment's own jumps are where the lookahead's stage 2 goes).
  for (int h = 0; h < kHookCount; ++h) {
    auto& ahead = prog.lookahead_[size_t(h)];
    uint32_t found = 0;
    std::vector<bool> seen(prog.chains_.size(), false);
    auto visit = [&](auto& self, TableId t, uint32_t c, uint32_t depth) -> void {
      if (seen[c] || depth > 4) return;
      seen[c] = true;
      for (uint32_t r = prog.chains_[c].rule_begin; r < prog.chains_[c].rule_end && found < Program::kLookahead; ++r) {
        const Program::CompiledRule& cr = prog.rules_[r];
        if (cr.segment != Program::kNone) {
          const Program::Segment& seg = prog.segments_[cr.segment];
          if (seg.kind == Program::SegmentKind::kHash) ahead[found++] = {cr.segment, t};
          r = seg.end - 1;
        } else if (cr.target.kind == Program::TargetKind::kJump || cr.target.kind == Program::TargetKind::kGoto) {
          self(self, t, cr.target.data.jump.chain, depth + 1);
        }
      }
    };
    Program::HookTables& order = prog.tables_of_[size_t(h)];
    for (TableId t : hook_tables(Hook(h))) {
      const uint32_t base = prog.base_[size_t(t)][size_t(h)];
      if (base == Program::kNone) continue;
      order.table[order.count] = t;
      order.base[order.count++] = base;
      if (found < Program::kLookahead) visit(visit, t, base, 0);
    }
  }
  prog.stats_.rules = uint32_t(prog.rules_.size());
  prog.stats_.chains = uint32_t(prog.chains_.size());
  for (const StringMatch& m : prog.strings_.patterns) {
    uint64_t& fp = prog.strings_.fingerprint;
    fp = fold_string_pattern(fp, m.pattern, m.from, m.to, m.icase);
  }
  std::sort(guards.begin(), guards.end());
  prog.guard_begin_.assign(prog.strings_.patterns.size() + 1, 0);
  for (const auto& [id, rule] : guards) {
    prog.guard_begin_[id + 1]++;
    prog.guarded_rules_.push_back(rule);
  }
  for (size_t id = 1; id < prog.guard_begin_.size(); ++id) {
    prog.guard_begin_[id] += prog.guard_begin_[id - 1];
  }
  return prog;
}

const uint64_t* Program::scanned(PayloadScan& scan, const Packet& p, MatchState& st) const {
  if (!scan.asked) {
    scan.asked = true;
    scan.found = st.string_scan(strings_, p);
  }
  return scan.found;
}

// Whether the scan found one of the segment's patterns ([pattern_lo,
// pattern_hi]; ids of other segments' rules in that range answer yes too,
// which costs only the pruning). Yes when the state answers per match only.
bool Program::patterns_found(const Classifier& cl, const Packet& p, MatchState& st, PayloadScan& scan) const {
  const uint64_t* found = scanned(scan, p, st);
  if (found == nullptr) return true;
  const uint32_t lo = cl.pattern_lo / 64, hi = cl.pattern_hi / 64;
  const uint64_t lo_mask = ~uint64_t(0) << (cl.pattern_lo % 64);
  const uint64_t hi_mask = ~uint64_t(0) >> (63 - cl.pattern_hi % 64);
  if (lo == hi) return (found[lo] & lo_mask & hi_mask) != 0;
  uint64_t any = (found[lo] & lo_mask) | (found[hi] & hi_mask);
  for (uint32_t pw = lo + 1; pw < hi; ++pw) any |= found[pw];
  return any != 0;
}

// Keeps in cand[w0..] the unguarded rules and the guarded ones whose
// pattern the scan found.
void Program::prune_by_scan(const Segment& s, const Classifier& cl, const uint64_t* found, uint32_t w0,
                            uint64_t* cand) const {
  const uint64_t* guarded = rows_.data() + cl.guarded_row;
  uint64_t keep[kMaxClassifierRules / 64];
  for (uint32_t w = w0; w < cl.words; ++w) keep[w] = ~guarded[w];
  const uint32_t lowest = s.begin + w0 * 64;
  for (uint32_t pw = cl.pattern_lo / 64; pw <= cl.pattern_hi / 64; ++pw) {
    for (uint64_t bits = found[pw]; bits != 0; bits &= bits - 1) {
      const uint32_t id = pw * 64 + uint32_t(__builtin_ctzll(bits));
      const uint32_t* end = guarded_rules_.data() + guard_begin_[id + 1];
      for (const uint32_t* r = std::lower_bound(guarded_rules_.data() + guard_begin_[id], end, lowest);
           r != end && *r < s.end; ++r) {
        const uint32_t q = *r - s.begin;
        keep[q / 64] |= uint64_t(1) << (q % 64);
      }
    }
  }
  for (uint32_t w = w0; w < cl.words; ++w) cand[w] &= keep[w];
}

namespace {

// Runs a compact target; the cold ones through the shared full form.
eval::Flow apply_compiled(const Program::CompiledTarget& t, const std::vector<Target>& cold, uint32_t rule,
                          Packet& p, HookResult& res) {
  using Kind = Program::TargetKind;
  switch (t.kind) {
    case Kind::kContinue: return eval::Flow::kContinue;
    case Kind::kAccept: return eval::Flow::kAccept;
    case Kind::kDrop: return eval::Flow::kDrop;
    case Kind::kReturn: return eval::Flow::kReturn;
    case Kind::kJump: return eval::Flow::kJump;
    case Kind::kGoto: return eval::Flow::kGoto;
    case Kind::kReject: return eval::apply(t.data.reject, rule, p, res);
    case Kind::kNat: return eval::apply(t.data.nat, rule, p, res);
    case Kind::kMark: return eval::apply(t.data.mark, rule, p, res);
    case Kind::kCold: break;
  }
  return eval::apply_target(cold[t.data.cold], rule, p, res);
}

bool iface_hit(const char* name, const char* want, uint8_t len, bool prefix) {
  const size_t n = strnlen(name, kIfNameSize);
  return prefix ? (n >= len && std::memcmp(name, want, len) == 0) : (n == len && std::memcmp(name, want, n) == 0);
}

// Fetches the first lines of a chain's rules, matches and cold matches
// together, so that their misses overlap instead of following one another.
void prefetch_chain(const Program::CompiledRule* rules, const Program::CompiledMatch* matches,
                    const std::vector<Program::ColdMatch>& cold, const Program::JumpData& j) {
  constexpr uint32_t kLines = 4;
  const uint32_t rule_end = std::min(j.rule_end, j.rule_begin + kLines);
  for (uint32_t r = j.rule_begin; r < rule_end; ++r) __builtin_prefetch(rules + r);
  auto lines = [](const void* begin, const void* end) {
    for (const char* a = static_cast<const char*>(begin); a < static_cast<const char*>(end); a += 64) {
      __builtin_prefetch(a);
    }
  };
  lines(matches + j.match_begin, matches + std::min(j.match_end, j.match_begin + 2 * kLines));
  if (j.cold_begin != Program::kNone) {
    lines(cold.data() + j.cold_begin, cold.data() + std::min<size_t>(cold.size(), j.cold_begin + 3));
  }
}

}  // namespace

void* Program::huge_allocate(size_t bytes, size_t align) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < kHuge) return ::operator new(bytes, std::align_val_t(align));
  const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
  void* p = std::aligned_alloc(kHuge, rounded);
  if (p == nullptr) throw std::bad_alloc();
  madvise(p, rounded, MADV_HUGEPAGE);  // a hint: without THP it changes nothing
  return p;
}

void Program::huge_deallocate(void* p, size_t bytes, size_t align) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < kHuge) {
    ::operator delete(p, std::align_val_t(align));
  } else {
    std::free(p);
  }
}

// The rare half of rule_matches, out of line: -i / -o and the cold
// matches (string, conntrack beyond --ctstate, limit, ...). False when the
// rule fails there.
bool Program::ifaces_match(const CompiledRule& r, const Packet& p) const {
  const Ifaces& f = ifaces_[r.iface];
  if ((r.flags & kHIn) && iface_hit(p.in_iface, f.in, f.in_len, r.flags & kHInPrefix) == bool(r.flags & kHInvIn)) {
    return false;
  }
  return !((r.flags & kHOut) &&
           iface_hit(p.out_iface, f.out, f.out_len, r.flags & kHOutPrefix) == bool(r.flags & kHInvOut));
}

bool Program::cold_match(uint32_t ri, const CompiledMatch& m, const Packet& p, MatchState& st,
                         PayloadScan& scan) const {
  const ColdMatch& cm = cold_matches_[m.cold];
  if (cm.pattern != kNone) {
    if (const uint64_t* found = scanned(scan, p, st)) {
      const bool hit = (found[cm.pattern / 64] >> (cm.pattern % 64)) & 1;
      return hit != std::get<StringMatch>(cm.match).inv;
    }
  }
  return eval::match_one(cm.match, eval::MatchCtx{p, st, ri, cm.index});
}

// Inline in walk_table() and find_in_segment(), its two callers: a rule is
// a handful of compares, and the call cost as much (six registers saved
// and restored for the cold matches' sake, which now live out of line).
[[gnu::always_inline]] inline bool Program::rule_matches(uint32_t ri, const Packet& p, MatchState& st,
                                                         PayloadScan& scan) const {
  const CompiledRule& r = rules_[ri];
  // ip_packet_match: a rule without -s has mask 0 and address 0, which every
  // source passes (and "! -s 0/0" none).
  if (((p.src & r.src_mask) == r.src) == bool(r.flags & kHInvSrc)) return false;
  if (((p.dst & r.dst_mask) == r.dst) == bool(r.flags & kHInvDst)) return false;
  if ((r.flags & (kHIn | kHOut)) && !ifaces_match(r, p)) [[unlikely]] return false;
  if (r.proto != 0 && (p.proto == r.proto) == bool(r.flags & kHInvProto)) return false;
  if ((r.flags & kHFrag) && p.fragment == bool(r.flags & kHInvFrag)) return false;
  const CompiledMatch* m = matches_.data() + r.match_begin;
  for (const CompiledMatch* end = m + r.match_count; m != end; ++m) {
    const eval::MatchCtx ctx{p, st, ri, m->index};
    switch (m->kind) {
      case MatchKind::kTcp:
        if (!eval::match(m->data.tcp, ctx)) return false;
        continue;
      case MatchKind::kStatistic:
        if (!eval::match(m->data.statistic, ctx)) return false;
        continue;
      case MatchKind::kMark:
        if (!eval::match(m->data.mark, ctx)) return false;
        continue;
      case MatchKind::kRecent:
        if (st.recent(m->data.recent, p) == m->inv) return false;
        continue;
      case MatchKind::kCtState:
        if (((p.ct_state & m->data.ct_states) != 0) == m->inv) return false;
        continue;
      case MatchKind::kCold:
        if (!cold_match(ri, *m, p, st, scan)) return false;
        continue;
    }
  }
  return true;
}

// First rule of a classifier segment at or after `from` that matches, or
// kNone. (Hash segments are probed by walk_table(); linear rules have none.)
uint32_t Program::find_in_segment(const Segment& s, uint32_t from, const Packet& p, MatchState& st,
                                  PayloadScan& scan) const {
  switch (s.kind) {
    case SegmentKind::kLinear:
    case SegmentKind::kHash:
      break;
    case SegmentKind::kClassifier: {
      const Classifier& cl = classifiers_[s.index];
      const uint32_t values[kFields] = {p.src, p.dst, p.proto, p.sport, p.dport};
      const uint64_t* rows[kFields];
      for (int f = 0; f < kFields; ++f) {
        const ClassField& cf = cl.fields[size_t(f)];
        rows[f] = rows_.data() + cf.row_begin;
        // One bound: no rule of the segment tests the field, its one row selects them all.
        if (cf.bound_count > 1) {
          rows[f] += bound_search::last_at_most(bounds_.data() + cf.bound_begin, cf.bound_count, values[f]) * cl.words;
        }
      }
      // Every word's candidates first (a loop without calls keeps the rows
      // in registers), then the walk. When it reaches the first guarded
      // candidate, the payload is scanned and the guarded rules whose
      // pattern is missing leave the candidates.
      const uint32_t first = from - s.begin;
      const uint64_t first_mask = ~uint64_t(0) << (first % 64);
      const auto candidates = [&rows](uint32_t w) {
        return rows[0][w] & rows[1][w] & rows[2][w] & rows[3][w] & rows[4][w];
      };
      if (cl.all_guarded) {
        // Every rule needs one of the segment's patterns: when a candidate
        // is left, a scan that found none of them ends the segment. Packets
        // that carry none (the common case: a gateway's blocked strings are
        // rare) leave here, before the candidate words and the walk.
        uint32_t w = first / 64;
        uint64_t any = candidates(w) & first_mask;
        while (any == 0 && ++w < cl.words) any = candidates(w);
        if (any == 0 || !patterns_found(cl, p, st, scan)) return kNone;
      }
      uint64_t cand[kMaxClassifierRules / 64];
      for (uint32_t w = first / 64; w < cl.words; ++w) cand[w] = candidates(w);
      cand[first / 64] &= first_mask;
      const uint64_t* guarded = cl.guarded_row == kNone ? nullptr : rows_.data() + cl.guarded_row;
      for (uint32_t w = first / 64; w < cl.words; ++w) {
        if (guarded != nullptr && (cand[w] & guarded[w]) != 0) {
          if (const uint64_t* found = scanned(scan, p, st)) [[likely]] {
            prune_by_scan(s, cl, found, w, cand);
          }
          guarded = nullptr;  // pruned, or the state answers per match only
        }
        for (uint64_t bits = cand[w]; bits != 0; bits &= bits - 1) {
          const uint32_t r = s.begin + w * 64 + uint32_t(__builtin_ctzll(bits));
          if (rule_matches(r, p, st, scan)) return r;
        }
      }
      return kNone;
    }
  }
  return kNone;
}

HookResult Program::evaluate(Hook hook, const Packet& packet, MatchState& state) const {
  Packet p = packet;
  HookResult res;
  evaluate(hook, p, state, res);
  return res;
}

void Program::evaluate(Hook hook, Packet& packet, MatchState& state, HookResult& result) const {
  PayloadScan scan;
  const HookTables& tables = tables_of_[size_t(hook)];
  eval::run_tables_in_place(
      tables.count, [&](uint32_t k) { return tables.table[k]; }, packet, result,
      [&](uint32_t k, Packet& p, HookResult& res) { return walk_table(tables.base[k], p, res, state, scan); });
}

void Program::evaluate_burst(Hook hook, Packet* packets, HookResult* results, uint32_t count,
                             MatchState& state) const {
  with_lookahead(
      hook, count,
      [&](uint32_t i, LookaheadKey& k) {
        k = lookahead_key(packets[i]);
        return !packets[i].fragment;  // a fragment skips hash segments
      },
      [&](uint32_t i) { evaluate(hook, packets[i], state, results[i]); });
}

const Program::HashSlot* Program::find_slot(const HashIndex& hi, uint64_t key) const {
  for (uint32_t slot = hash_slot(key, hi.shift);; slot = (slot + 1) & hi.mask) {
    const HashSlot& e = slots_[hi.slot_begin + slot];
    if (e.rule == kNone) return nullptr;
    if (e.key == key) return &e;
  }
}

template <class Fn>
void Program::for_each_lookahead(Hook hook, const LookaheadKey& k, Fn&& fn) const {
  for (const Lookahead& a : lookahead_[size_t(hook)]) {
    if (a.segment == kNone) break;
    if (a.table == TableId::kNat && !k.with_nat) continue;
    const HashIndex& hi = hashes_[segments_[a.segment].index];
    fn(hi, hash_key(hi.with_dst, k.dst, k.proto, k.dport));
  }
}

void Program::prefetch_slots(Hook hook, const LookaheadKey& k) const {
  for_each_lookahead(hook, k, [this](const HashIndex& hi, uint64_t key) {
    __builtin_prefetch(&slots_[hi.slot_begin + hash_slot(key, hi.shift)]);
  });
}

void Program::prefetch_targets(Hook hook, const LookaheadKey& k) const {
  for_each_lookahead(hook, k, [this](const HashIndex& hi, uint64_t key) {
    const HashSlot* e = find_slot(hi, key);
    if (e == nullptr) return;
    if (e->chain == kNone) {
      __builtin_prefetch(&rules_[e->rule]);
      return;
    }
    // The chain's first rules and their matches (kube-proxy's KUBE-SVC
    // chain: a line per rule, two matches a line) and its first cold match.
    constexpr uint32_t kRules = 4, kMatches = 8;
    const uint32_t rule_end = std::min(e->rule_end, e->rule_begin + kRules);
    for (uint32_t r = e->rule_begin; r < rule_end; ++r) __builtin_prefetch(&rules_[r]);
    const uint32_t match_end = std::min(e->match_begin + kMatches, uint32_t(matches_.size()));
    for (uint32_t m = e->match_begin; m < match_end; m += 2) __builtin_prefetch(&matches_[m]);
    if (e->cold_begin != kNone) __builtin_prefetch(&cold_matches_[e->cold_begin]);
  });
}

// Stage 3: the chains the slot's chain jumps to from its first rules (the
// KUBE-SEP chains of a KUBE-SVC chain, one per endpoint: which of them the
// statistic match picks is known only in the walk). Their first two rules,
// one line each: the endpoint's masquerade test and its DNAT.
void Program::prefetch_jumps(Hook hook, const LookaheadKey& k) const {
  for_each_lookahead(hook, k, [this](const HashIndex& hi, uint64_t key) {
    const HashSlot* e = find_slot(hi, key);
    if (e == nullptr || e->chain == kNone) return;
    constexpr uint32_t kRules = 4;
    const uint32_t rule_end = std::min(e->rule_end, e->rule_begin + kRules);
    for (uint32_t r = e->rule_begin; r < rule_end; ++r) {
      const CompiledTarget& t = rules_[r].target;
      if (t.kind != TargetKind::kJump && t.kind != TargetKind::kGoto) continue;
      const JumpData& j = t.data.jump;
      if (j.rule_begin == j.rule_end) continue;
      // Its first line, and its second, or the first again: no loop.
      const CompiledRule* first = rules_.data() + j.rule_begin;
      __builtin_prefetch(first);
      __builtin_prefetch(first + (j.rule_end - j.rule_begin > 1 ? 1 : 0));
    }
  });
}

// One table's traversal over the compiled form, as eval's interpreter and
// ipt_do_table walk it. A jump prefetches its chain's first lines, so that
// they arrive together instead of one after another.
Action Program::walk_table(uint32_t base, Packet& p, HookResult& res, MatchState& st, PayloadScan& scan) const {
  struct Frame {
    uint32_t chain, next, end;
  };
  Frame stack[kMaxDepth];  // the callers of the chain being walked
  const CompiledRule* rules = rules_.data();
  uint32_t chain = base, pos = chains_[base].rule_begin, end = chains_[base].rule_end, depth = 0;
  // Into chain `j` (the caller, if any, already pushed).
  auto enter = [&](const JumpData& j) {
    prefetch_chain(rules, matches_.data(), cold_matches_, j);
    chain = j.chain;
    pos = j.rule_begin;
    end = j.rule_end;
  };
  while (true) {
    if (pos >= end) {
      // The end of a chain: back to the caller's next rule, or, in the
      // built-in chain, its policy.
      if (depth == 0) return chains_[chain].policy == Policy::kDrop ? Action::kDrop : Action::kAccept;
      --depth;
      chain = stack[depth].chain;
      pos = stack[depth].next;
      end = stack[depth].end;
      continue;
    }
    // Find the next rule that matches: `hit`, and `next`, where the walk
    // goes on after it.
    uint32_t hit, next;
    const CompiledRule& r = rules[pos];
    if (r.segment == kNone) [[likely]] {
      if (!rule_matches(pos, p, st, scan)) {
        ++pos;
        continue;
      }
      hit = pos;
      next = pos + 1;
    } else if (const Segment& seg = segments_[r.segment]; seg.kind == SegmentKind::kHash) {
      // A hashed rule tests exactly its key (and comments): an equal key is
      // a match, and nothing else of the rule needs reading. After a hit
      // nothing else in the segment can match. A fragment has no ports.
      const HashIndex& hi = hashes_[seg.index];
      const HashSlot* found = p.fragment ? nullptr : find_slot(hi, hash_key(hi.with_dst, p.dst, p.proto, p.dport));
      if (found == nullptr || found->rule < pos) {
        pos = seg.end;
        continue;
      }
      if (found->chain != kNone) {
        // -j CHAIN, from the slot: what apply_compiled and kJump do.
        record_match(res, st, found->rule, p);
        stack[depth++] = {chain, seg.end, end};
        enter(JumpData{found->chain, found->rule_begin, found->rule_end, found->match_begin,
                       std::min(found->match_begin + 8, uint32_t(matches_.size())), found->cold_begin});
        continue;
      }
      hit = found->rule;
      next = seg.end;
    } else {
      hit = find_in_segment(seg, pos, p, st, scan);
      if (hit == kNone) {
        pos = seg.end;
        continue;
      }
      next = hit + 1;
    }
    // The rule index is its id (checked when compiled).
    const CompiledTarget& t = rules[hit].target;
    record_match(res, st, hit, p);
    switch (apply_compiled(t, targets_, hit, p, res)) {
      case eval::Flow::kContinue:
        pos = next;
        break;
      case eval::Flow::kJump:
        stack[depth++] = {chain, next, end};
        enter(t.data.jump);
        break;
      case eval::Flow::kGoto:
        enter(t.data.jump);
        break;
      case eval::Flow::kReturn:
        pos = end;  // leaves the chain as its end does
        break;
      case eval::Flow::kAccept:
        return Action::kAccept;
      case eval::Flow::kDrop:
        return Action::kDrop;
      case eval::Flow::kReject:
        return Action::kReject;
    }
  }
}

}  // namespace dpgate::rules
