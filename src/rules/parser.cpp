// iptables-restore text -> Ruleset. Follows iptables 1.8.9 (nf_tables):
// getopt-style option parsing (long options, "--opt=value", "-ptcp",
// unambiguous prefixes), options belong to the most recently loaded match
// that has them, -p tcp/udp/icmp load their match implicitly.
#include "dpgate/rules/parser.hpp"

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>

#include "names.hpp"

namespace dpgate::rules {
namespace {

// ---- small value parsers (numbers as xtables_strtoui: base 0) -------------

std::optional<uint64_t> parse_uint(std::string_view s, uint64_t max, int base = 0) {
  if (s.empty() || s[0] == '-' || s[0] == '+' || s[0] == ' ') return std::nullopt;
  std::string str(s);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(str.c_str(), &end, base);
  if (errno != 0 || end == str.c_str() || *end != '\0' || v > max) return std::nullopt;
  return v;
}

// xtables' __numeric_to_ipaddr: up to 4 dotted parts (base 0), missing trailing
// parts are zero ("1.2.3" is 1.2.3.0).
std::optional<uint32_t> parse_ipv4(std::string_view s, bool is_mask = false) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint32_t bytes[4] = {0, 0, 0, 0};
  size_t start = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = s.find('.', start);
    if (i == 3) dot = std::string_view::npos;
    std::string_view part = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    auto v = parse_uint(part, 255);
    if (!v) return std::nullopt;
    bytes[i] = uint32_t(*v);
    if (dot == std::string_view::npos) {
      if (i < 3 && is_mask) return std::nullopt;
      break;
    }
    start = dot + 1;
  }
  return bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3];
}

// "addr[/len|/mask]" -> network with the address masked, as iptables stores it.
std::optional<Ipv4Net> parse_net(std::string_view s, bool apply_mask = true) {
  size_t slash = s.find('/');
  auto addr = parse_ipv4(s.substr(0, slash));
  if (!addr) return std::nullopt;
  uint32_t mask = 0xffffffff;
  if (slash != std::string_view::npos) {
    std::string_view m = s.substr(slash + 1);
    if (auto bits = parse_uint(m, 32); bits && m.find('.') == m.npos) {
      mask = names::cidr_to_mask(int(*bits));
    } else if (auto dotted = parse_ipv4(m, true)) {
      mask = *dotted;
    } else {
      return std::nullopt;
    }
  }
  return Ipv4Net{apply_mask ? *addr & mask : *addr, mask};
}

std::optional<uint16_t> parse_port(std::string_view s, std::string_view proto) {
  if (auto v = parse_uint(s, 65535)) return uint16_t(*v);
  return names::service_port(s, proto);
}

// "a", "a:b", ":b", "a:", ":" (xtables_parse_port_range with ':').
// allow_reversed: the real tool takes "4:3" (never matches) for udp,
// conntrack ports and length, not for tcp or multiport.
std::optional<PortRange> parse_port_range(std::string_view s, std::string_view proto,
                                          bool allow_reversed = false) {
  size_t colon = s.find(':');
  if (colon == s.npos) {
    auto p = parse_port(s, proto);
    if (!p) return std::nullopt;
    return PortRange{*p, *p};
  }
  std::string_view a = s.substr(0, colon), b = s.substr(colon + 1);
  PortRange r{0, 65535};
  if (!a.empty()) {
    auto p = parse_port(a, proto);
    if (!p) return std::nullopt;
    r.lo = *p;
  }
  if (!b.empty()) {
    auto p = parse_port(b, proto);
    if (!p) return std::nullopt;
    r.hi = *p;
  }
  if (r.lo > r.hi && !allow_reversed) return std::nullopt;
  return r;
}

// "value[/mask]" as xtables_parse_mark_mask.
std::optional<std::pair<uint32_t, uint32_t>> parse_mark(std::string_view s) {
  size_t slash = s.find('/');
  auto v = parse_uint(s.substr(0, slash), 0xffffffff);
  if (!v) return std::nullopt;
  uint32_t mask = 0xffffffff;
  if (slash != s.npos) {
    auto m = parse_uint(s.substr(slash + 1), 0xffffffff);
    if (!m) return std::nullopt;
    mask = uint32_t(*m);
  }
  return std::pair{uint32_t(*v), mask};
}

std::optional<uint16_t> parse_flag_list(std::string_view s, const names::Flag* table, size_t n,
                                        bool allow_none_word) {
  uint16_t bits = 0;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string_view word = s.substr(start, comma == s.npos ? s.npos : comma - start);
    bool found = false;
    for (size_t i = 0; i < n; ++i) {
      if (word == table[i].name) {
        bits |= table[i].bit;
        found = true;
        break;
      }
    }
    if (!found && allow_none_word && word == "NONE") found = true;
    if (!found) return std::nullopt;
    if (comma == s.npos) break;
    start = comma + 1;
  }
  return bits;
}

bool is_builtin_target(std::string_view n) {
  static const char* kTargets[] = {"ACCEPT", "DROP",  "RETURN",     "REJECT", "DNAT",
                                   "SNAT",   "MASQUERADE", "REDIRECT", "MARK", "CONNMARK",
                                   "LOG",    "NOTRACK", "CT", "QUEUE", "NFQUEUE", "TRACE"};
  for (const char* t : kTargets) {
    if (n == t) return true;
  }
  return false;
}

// ---- option tables ----------------------------------------------------------

enum class Arg : uint8_t { kNone, kOne, kTwo };

struct OptSpec {
  const char* name;
  Arg arg;
  int id;
};

// Option ids already given in one rule or one extension (MainOpt, ExtOpt:
// small numbers). Bits, not a std::set: a rule's options allocate nothing.
struct SeenIds {
  std::bitset<128> bits;
  // False when `id` was seen before.
  bool insert(int id) {
    if (bits[size_t(id)]) return false;
    bits[size_t(id)] = true;
    return true;
  }
  size_t count(int id) const { return bits[size_t(id)] ? 1 : 0; }
  size_t size() const { return bits.count(); }
  bool empty() const { return bits.none(); }
};

// Per-extension parser state: which options were seen (by id).
struct ExtState {
  std::string name;
  const std::vector<OptSpec>* opts = nullptr;  // match_opts() / target_opts(): static tables
  SeenIds seen;
  SourcePos pos;  // where -m / -j was
  size_t match_index = 0;  // into rule.matches for matches
  bool is_target = false;
};

// Main options, in getopt's table first (they win over extensions).
enum MainOpt : int {
  kOptSource = 1, kOptDest, kOptProto, kOptIn, kOptOut, kOptFrag, kOptMatch,
  kOptJump, kOptGoto, kOptCounters,
  kOptAppend, kOptInsert, kOptDelete, kOptNew, kOptDeleteChain, kOptFlush,
  kOptPolicy, kOptTable, kOptReplace, kOptZero, kOptList, kOptRename,
};
const std::vector<OptSpec> kMainOpts = {
    {"source", Arg::kOne, kOptSource},        {"src", Arg::kOne, kOptSource},
    {"destination", Arg::kOne, kOptDest},     {"dst", Arg::kOne, kOptDest},
    {"protocol", Arg::kOne, kOptProto},       {"in-interface", Arg::kOne, kOptIn},
    {"out-interface", Arg::kOne, kOptOut},    {"fragment", Arg::kNone, kOptFrag},
    {"fragments", Arg::kNone, kOptFrag},      {"match", Arg::kOne, kOptMatch},
    {"jump", Arg::kOne, kOptJump},            {"goto", Arg::kOne, kOptGoto},
    {"set-counters", Arg::kTwo, kOptCounters}, {"append", Arg::kOne, kOptAppend},
    {"insert", Arg::kOne, kOptInsert},        {"delete", Arg::kOne, kOptDelete},
    {"new-chain", Arg::kOne, kOptNew},        {"delete-chain", Arg::kNone, kOptDeleteChain},
    {"flush", Arg::kNone, kOptFlush},         {"policy", Arg::kOne, kOptPolicy},
    {"table", Arg::kOne, kOptTable},          {"replace", Arg::kOne, kOptReplace},
    {"zero", Arg::kNone, kOptZero},           {"list", Arg::kNone, kOptList},
    {"rename-chain", Arg::kOne, kOptRename},
};
int short_main_opt(char c) {
  switch (c) {
    case 's': return kOptSource;
    case 'd': return kOptDest;
    case 'p': return kOptProto;
    case 'i': return kOptIn;
    case 'o': return kOptOut;
    case 'f': return kOptFrag;
    case 'm': return kOptMatch;
    case 'j': return kOptJump;
    case 'g': return kOptGoto;
    case 'c': return kOptCounters;
    case 'A': return kOptAppend;
    case 'I': return kOptInsert;
    case 'D': return kOptDelete;
    case 'N': return kOptNew;
    case 'X': return kOptDeleteChain;
    case 'F': return kOptFlush;
    case 'P': return kOptPolicy;
    case 't': return kOptTable;
    case 'R': return kOptReplace;
    case 'Z': return kOptZero;
    case 'L': return kOptList;
    case 'E': return kOptRename;
    default: return 0;
  }
}
Arg main_opt_arg(int id) {
  for (const auto& o : kMainOpts) {
    if (o.id == id) return o.arg;
  }
  return Arg::kNone;
}

// Extension option ids.
enum ExtOpt : int {
  kTcpSport = 1, kTcpDport, kTcpFlags, kTcpSyn, kTcpOption,
  kIcmpType,
  kMpSports, kMpDports, kMpPorts,
  kCtState, kCtProto, kCtOrigSrc, kCtOrigDst, kCtReplSrc, kCtReplDst, kCtOrigSrcPort,
  kCtOrigDstPort, kCtReplSrcPort, kCtReplDstPort, kCtStatus, kCtExpire, kCtDir,
  kStState,
  kMarkMark,
  kStatMode, kStatProb, kStatEvery, kStatPacket,
  kRcSet, kRcRcheck, kRcUpdate, kRcRemove, kRcSeconds, kRcHitcount, kRcReap, kRcRttl, kRcName,
  kRcMask, kRcRsource, kRcRdest,
  kAtSrc, kAtDst, kAtLimitIn, kAtLimitOut,
  kCommentText,
  kStrString, kStrHex, kStrAlgo, kStrFrom, kStrTo, kStrIcase,
  kLimLimit, kLimBurst,
  kLenLength,
  kIrSrc, kIrDst,
  kNfacctName,
  kRejWith,
  kNatToDest, kNatToSrc, kNatToPorts, kNatRandom, kNatRandomFully, kNatPersistent,
  kMkSetXmark, kMkSetMark, kMkAndMark, kMkOrMark, kMkXorMark,
  kCmSetXmark, kCmSetMark, kCmAndMark, kCmOrMark, kCmXorMark, kCmSave, kCmRestore,
  kCmNfmask, kCmCtmask, kCmMask,
  kLogLevel, kLogPrefix, kLogTcpSeq, kLogTcpOpt, kLogIpOpt, kLogUid, kLogMac,
  kCtNotrack,
};
static_assert(kCtNotrack < 128 && kOptRename < 128, "SeenIds holds 128 option ids");

const std::vector<OptSpec>* match_opts(std::string_view name) {
  static const std::map<std::string_view, std::vector<OptSpec>> kMatches = {
      {"tcp", {{"source-port", Arg::kOne, kTcpSport}, {"sport", Arg::kOne, kTcpSport},
               {"destination-port", Arg::kOne, kTcpDport}, {"dport", Arg::kOne, kTcpDport},
               {"tcp-flags", Arg::kTwo, kTcpFlags}, {"syn", Arg::kNone, kTcpSyn},
               {"tcp-option", Arg::kOne, kTcpOption}}},
      {"udp", {{"source-port", Arg::kOne, kTcpSport}, {"sport", Arg::kOne, kTcpSport},
               {"destination-port", Arg::kOne, kTcpDport}, {"dport", Arg::kOne, kTcpDport}}},
      {"icmp", {{"icmp-type", Arg::kOne, kIcmpType}}},
      {"multiport", {{"source-ports", Arg::kOne, kMpSports}, {"sports", Arg::kOne, kMpSports},
                     {"destination-ports", Arg::kOne, kMpDports},
                     {"dports", Arg::kOne, kMpDports}, {"ports", Arg::kOne, kMpPorts}}},
      {"conntrack", {{"ctstate", Arg::kOne, kCtState}, {"ctproto", Arg::kOne, kCtProto},
                     {"ctorigsrc", Arg::kOne, kCtOrigSrc}, {"ctorigdst", Arg::kOne, kCtOrigDst},
                     {"ctreplsrc", Arg::kOne, kCtReplSrc}, {"ctrepldst", Arg::kOne, kCtReplDst},
                     {"ctorigsrcport", Arg::kOne, kCtOrigSrcPort},
                     {"ctorigdstport", Arg::kOne, kCtOrigDstPort},
                     {"ctreplsrcport", Arg::kOne, kCtReplSrcPort},
                     {"ctrepldstport", Arg::kOne, kCtReplDstPort},
                     {"ctstatus", Arg::kOne, kCtStatus}, {"ctexpire", Arg::kOne, kCtExpire},
                     {"ctdir", Arg::kOne, kCtDir}}},
      {"state", {{"state", Arg::kOne, kStState}}},
      {"mark", {{"mark", Arg::kOne, kMarkMark}}},
      {"connmark", {{"mark", Arg::kOne, kMarkMark}}},
      {"statistic", {{"mode", Arg::kOne, kStatMode}, {"probability", Arg::kOne, kStatProb},
                     {"every", Arg::kOne, kStatEvery}, {"packet", Arg::kOne, kStatPacket}}},
      {"recent", {{"set", Arg::kNone, kRcSet}, {"rcheck", Arg::kNone, kRcRcheck},
                  {"update", Arg::kNone, kRcUpdate}, {"remove", Arg::kNone, kRcRemove},
                  {"seconds", Arg::kOne, kRcSeconds}, {"hitcount", Arg::kOne, kRcHitcount},
                  {"reap", Arg::kNone, kRcReap}, {"rttl", Arg::kNone, kRcRttl},
                  {"name", Arg::kOne, kRcName}, {"mask", Arg::kOne, kRcMask},
                  {"rsource", Arg::kNone, kRcRsource}, {"rdest", Arg::kNone, kRcRdest}}},
      {"addrtype", {{"src-type", Arg::kOne, kAtSrc}, {"dst-type", Arg::kOne, kAtDst},
                    {"limit-iface-in", Arg::kNone, kAtLimitIn},
                    {"limit-iface-out", Arg::kNone, kAtLimitOut}}},
      {"comment", {{"comment", Arg::kOne, kCommentText}}},
      {"string", {{"string", Arg::kOne, kStrString}, {"hex-string", Arg::kOne, kStrHex},
                  {"algo", Arg::kOne, kStrAlgo}, {"from", Arg::kOne, kStrFrom},
                  {"to", Arg::kOne, kStrTo}, {"icase", Arg::kNone, kStrIcase}}},
      {"limit", {{"limit", Arg::kOne, kLimLimit}, {"limit-burst", Arg::kOne, kLimBurst}}},
      {"length", {{"length", Arg::kOne, kLenLength}}},
      {"iprange", {{"src-range", Arg::kOne, kIrSrc}, {"dst-range", Arg::kOne, kIrDst}}},
      {"nfacct", {{"nfacct-name", Arg::kOne, kNfacctName}}},
  };
  auto it = kMatches.find(name);
  return it == kMatches.end() ? nullptr : &it->second;
}

const std::vector<OptSpec>* target_opts(std::string_view name) {
  static const std::map<std::string_view, std::vector<OptSpec>> kTargets = {
      {"REJECT", {{"reject-with", Arg::kOne, kRejWith}}},
      {"DNAT", {{"to-destination", Arg::kOne, kNatToDest}, {"random", Arg::kNone, kNatRandom},
                {"persistent", Arg::kNone, kNatPersistent}}},
      {"SNAT", {{"to-source", Arg::kOne, kNatToSrc}, {"random", Arg::kNone, kNatRandom},
                {"random-fully", Arg::kNone, kNatRandomFully},
                {"persistent", Arg::kNone, kNatPersistent}}},
      {"MASQUERADE", {{"to-ports", Arg::kOne, kNatToPorts}, {"random", Arg::kNone, kNatRandom},
                      {"random-fully", Arg::kNone, kNatRandomFully}}},
      {"REDIRECT", {{"to-ports", Arg::kOne, kNatToPorts}, {"random", Arg::kNone, kNatRandom}}},
      {"MARK", {{"set-xmark", Arg::kOne, kMkSetXmark}, {"set-mark", Arg::kOne, kMkSetMark},
                {"and-mark", Arg::kOne, kMkAndMark}, {"or-mark", Arg::kOne, kMkOrMark},
                {"xor-mark", Arg::kOne, kMkXorMark}}},
      {"CONNMARK", {{"set-xmark", Arg::kOne, kCmSetXmark}, {"set-mark", Arg::kOne, kCmSetMark},
                    {"and-mark", Arg::kOne, kCmAndMark}, {"or-mark", Arg::kOne, kCmOrMark},
                    {"xor-mark", Arg::kOne, kCmXorMark}, {"save-mark", Arg::kNone, kCmSave},
                    {"restore-mark", Arg::kNone, kCmRestore},
                    {"nfmask", Arg::kOne, kCmNfmask}, {"ctmask", Arg::kOne, kCmCtmask},
                    {"mask", Arg::kOne, kCmMask}}},
      {"LOG", {{"log-level", Arg::kOne, kLogLevel}, {"log-prefix", Arg::kOne, kLogPrefix},
               {"log-tcp-sequence", Arg::kNone, kLogTcpSeq},
               {"log-tcp-options", Arg::kNone, kLogTcpOpt},
               {"log-ip-options", Arg::kNone, kLogIpOpt}, {"log-uid", Arg::kNone, kLogUid},
               {"log-macdecode", Arg::kNone, kLogMac}}},
      {"CT", {{"notrack", Arg::kNone, kCtNotrack}}},
      {"NOTRACK", {}},
      {"ACCEPT", {}},
      {"DROP", {}},
      {"RETURN", {}},
  };
  auto it = kTargets.find(name);
  return it == kTargets.end() ? nullptr : &it->second;
}

// Which options may carry '!'.
bool invertible(int id) {
  switch (id) {
    case kTcpSport: case kTcpDport: case kTcpFlags: case kTcpSyn: case kTcpOption:
    case kIcmpType: case kMpSports: case kMpDports: case kMpPorts:
    case kCtState: case kCtProto: case kCtOrigSrc: case kCtOrigDst: case kCtReplSrc:
    case kCtReplDst: case kCtOrigSrcPort: case kCtOrigDstPort: case kCtReplSrcPort:
    case kCtReplDstPort: case kCtStatus: case kCtExpire:
    case kStState: case kMarkMark: case kStatProb: case kStatEvery:
    case kRcSet: case kRcRcheck: case kRcUpdate: case kRcRemove:
    case kAtSrc: case kAtDst: case kStrString: case kStrHex: case kLenLength:
    case kIrSrc: case kIrDst:
      return true;
    default:
      return false;
  }
}

struct ParseFail {
  Error error;
};

// ---- one command line ------------------------------------------------------

class LineParser {
 public:
  LineParser(std::vector<Token> toks, SourcePos line_pos, TableId table)
      : toks_(std::move(toks)), line_pos_(std::move(line_pos)), table_(table) {}

  struct Command {
    int op = 0;  // kOptAppend ...
    std::string chain;
    SourcePos chain_pos;
    std::optional<uint32_t> rulenum;
    std::string policy;
    SourcePos policy_pos;
    Rule rule;
    bool has_rule = false;
  };

  Command parse(size_t first) {
    i_ = first;
    Command cmd;
    parse_command(cmd);
    return cmd;
  }

 private:
  [[noreturn]] void fail(uint32_t col, std::string msg) {
    SourcePos p = line_pos_;
    p.col = col;
    throw ParseFail{Error{p, std::move(msg)}};
  }
  [[noreturn]] void fail_expected(size_t tok_index, const std::string& what) {
    if (tok_index >= toks_.size()) {
      uint32_t col = toks_.empty() ? 1 : toks_.back().col + uint32_t(toks_.back().text.size());
      fail(col, "expected " + what + " but found end of line");
    }
    fail(toks_[tok_index].col,
         "expected " + what + " but found '" + toks_[tok_index].text + "'");
  }
  SourcePos pos_of(size_t tok_index) const {
    SourcePos p = line_pos_;
    p.col = tok_index < toks_.size() ? toks_[tok_index].col : 1;
    return p;
  }

  // A decoded option occurrence.
  struct Opt {
    std::string name;  // long name or single char
    bool is_short = false;
    std::optional<std::string> inline_value;
    size_t tok = 0;
  };

  std::optional<Opt> read_option() {
    const std::string& t = toks_[i_].text;
    Opt o;
    o.tok = i_;
    if (t.size() > 2 && t[0] == '-' && t[1] == '-') {
      size_t eq = t.find('=');
      o.name = t.substr(2, eq == t.npos ? t.npos : eq - 2);
      if (eq != t.npos) o.inline_value = t.substr(eq + 1);
    } else if (t.size() >= 2 && t[0] == '-' && t[1] != '-') {
      o.name = t.substr(1, 1);
      o.is_short = true;
      if (t.size() > 2) o.inline_value = t.substr(2);
    } else {
      return std::nullopt;
    }
    ++i_;
    return o;
  }

  std::string take_arg(const Opt& o, const std::string& what) {
    if (o.inline_value) return *o.inline_value;
    if (i_ >= toks_.size()) fail_expected(i_, what + " after '" + toks_[o.tok].text + "'");
    return toks_[i_++].text;
  }
  size_t arg_tok(const Opt& o) const { return o.inline_value ? o.tok : i_ - 1; }

  void parse_command(Command& cmd) {
    if (i_ >= toks_.size()) fail_expected(i_, "a command");
    auto o = read_option();
    if (!o) fail_expected(i_, "a command (-A, -I, -D, -N, -X, -F, -P)");
    int id = 0;
    if (o->is_short) {
      id = short_main_opt(o->name[0]);
    } else {
      id = lookup_long(o->name, kMainOpts, o->tok);
    }
    switch (id) {
      case kOptAppend: case kOptInsert: case kOptDelete: case kOptNew: case kOptPolicy:
        break;
      case kOptDeleteChain: case kOptFlush:
        break;
      case kOptTable:
        fail(toks_[o->tok].col, "expected a command but found '" + toks_[o->tok].text +
                                    "' (-t cannot be used in iptables-restore input)");
      default:
        fail_expected(o->tok, "a command (-A, -I, -D, -N, -X, -F, -P)");
    }
    cmd.op = id;
    if (id == kOptDeleteChain || id == kOptFlush) {
      if (o->inline_value) {
        cmd.chain = *o->inline_value;
        cmd.chain_pos = pos_of(o->tok);
      } else if (i_ < toks_.size() && !toks_[i_].text.empty() && toks_[i_].text[0] != '-') {
        cmd.chain_pos = pos_of(i_);
        cmd.chain = toks_[i_++].text;
      }
      if (i_ < toks_.size()) fail_expected(i_, "end of line");
      return;
    }
    std::string chain = take_arg(*o, "a chain name");
    cmd.chain_pos = pos_of(arg_tok(*o));
    cmd.chain = chain;
    if (id == kOptNew) {
      if (i_ < toks_.size()) fail_expected(i_, "end of line");
      return;
    }
    if (id == kOptPolicy) {
      if (i_ >= toks_.size()) fail_expected(i_, "a policy (ACCEPT or DROP)");
      cmd.policy_pos = pos_of(i_);
      cmd.policy = toks_[i_++].text;
      if (i_ < toks_.size()) fail_expected(i_, "end of line");
      return;
    }
    if (id == kOptInsert && i_ < toks_.size()) {
      if (auto n = parse_uint(toks_[i_].text, 0xffffffff, 10)) {
        if (*n == 0) fail(toks_[i_].col, "expected a rule number >= 1 but found '0'");
        cmd.rulenum = uint32_t(*n);
        ++i_;
      }
    }
    if (id == kOptDelete && i_ + 1 == toks_.size()) {
      if (auto n = parse_uint(toks_[i_].text, 0xffffffff, 10)) {
        if (*n == 0) fail(toks_[i_].col, "expected a rule number >= 1 but found '0'");
        cmd.rulenum = uint32_t(*n);
        ++i_;
        return;
      }
    }
    cmd.rule = parse_rule(cmd.chain);
    cmd.has_rule = true;
  }

  int lookup_long(const std::string& name, const std::vector<OptSpec>& opts, size_t tok) {
    for (const auto& o : opts) {
      if (name == o.name) return o.id;
    }
    int found = 0;
    for (const auto& o : opts) {
      if (std::string_view(o.name).substr(0, name.size()) == name) {
        if (found != 0 && found != o.id) {
          fail(toks_[tok].col, "option '--" + name + "' is ambiguous");
        }
        found = o.id;
      }
    }
    return found;
  }

  // ---- the rule ------------------------------------------------------------

  Rule parse_rule(const std::string& chain) {
    Rule r;
    r.pos = pos_of(i_ > 0 ? i_ - 1 : 0);
    r.pos.col = toks_.empty() ? 1 : toks_[0].col;
    rule_ = &r;
    exts_.clear();
    target_ext_.reset();
    SeenIds main_seen;
    bool have_target = false;
    while (i_ < toks_.size()) {
      bool inv = false;
      size_t bang = i_;
      if (toks_[i_].text == "!") {
        inv = true;
        ++i_;
        if (i_ >= toks_.size()) fail_expected(i_, "an option after '!'");
      }
      auto o = read_option();
      if (!o) {
        fail(toks_[i_].col, "expected an option but found '" + toks_[i_].text + "'");
      }
      // Main options first, as getopt's merged table has them first.
      int main_id = 0;
      if (o->is_short) {
        main_id = short_main_opt(o->name[0]);
        if (main_id == 0) fail(toks_[o->tok].col, "unknown option '" + toks_[o->tok].text + "'");
      } else {
        main_id = exact_main(o->name);
      }
      if (main_id != 0) {
        handle_main(main_id, *o, inv, bang, main_seen, have_target, chain);
        continue;
      }
      if (!handle_ext_option(*o, inv, bang)) {
        // Prefix of a main option (getopt_long abbreviations)?
        int pid = lookup_long(o->name, kMainOpts, o->tok);
        if (pid != 0) {
          handle_main(pid, *o, inv, bang, main_seen, have_target, chain);
          continue;
        }
        fail(toks_[o->tok].col, "unknown option '" + toks_[o->tok].text + "'");
      }
    }
    finish_rule(r, chain);
    return r;
  }

  int exact_main(std::string_view name) {
    for (const auto& o : kMainOpts) {
      if (name == std::string_view(o.name)) return o.id;
    }
    return 0;
  }

  void handle_main(int id, const Opt& o, bool inv, size_t bang, SeenIds& seen,
                   bool& have_target, const std::string& chain) {
    (void)chain;
    const uint32_t col = toks_[o.tok].col;
    auto once = [&](const char* flag) {
      if (!seen.insert(id)) {
        fail(col, std::string("expected one ") + flag + " but found another '" +
                      toks_[o.tok].text + "'");
      }
    };
    auto no_inv = [&]() {
      if (inv) fail(toks_[bang].col, "'!' cannot be used with '" + toks_[o.tok].text + "'");
    };
    Rule& r = *rule_;
    // iptables 1.8.9 takes a main option's value from the next argument
    // only: "--source=1.2.3.4" and "-ptcp" are refused by the real tool.
    if (o.inline_value && main_opt_arg(id) != Arg::kNone) {
      fail(col, "expected the value of '" + toks_[o.tok].text.substr(0, o.is_short ? 2 : toks_[o.tok].text.find('=')) +
                    "' as a separate argument but found '" + toks_[o.tok].text + "'");
    }
    switch (id) {
      case kOptSource:
      case kOptDest: {
        once(id == kOptSource ? "-s" : "-d");
        std::string v = take_arg(o, "an address");
        size_t at = arg_tok(o);
        if (v.find(',') != v.npos) {
          fail(toks_[at].col, "expected a single address (lists are not supported) but found '" +
                                  v + "'");
        }
        auto net = parse_net(v);
        if (!net) fail_expected_value(at, "an IPv4 address[/mask]", v);
        if (inv && net->mask == 0) {
          fail(toks_[bang].col, "'!' with a /0 address would never match");
        }
        (id == kOptSource ? r.src : r.dst) = *net;
        (id == kOptSource ? r.inv_src : r.inv_dst) = inv;
        break;
      }
      case kOptProto: {
        once("-p");
        std::string v = take_arg(o, "a protocol");
        size_t at = arg_tok(o);
        std::optional<uint8_t> p;
        if (auto n = parse_uint(v, 255)) {
          p = uint8_t(*n);
        } else if (v == "all") {
          p = 0;
        } else {
          p = names::protocol_number(v);
          if (!p) {
            std::string lower = v;
            for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
            p = names::protocol_number(lower);
          }
        }
        if (!p) fail_expected_value(at, "a protocol name or number", v);
        if (inv && *p == 0) fail(toks_[bang].col, "'! -p all' would never match");
        r.proto = *p;
        r.inv_proto = inv;
        break;
      }
      case kOptIn:
      case kOptOut: {
        once(id == kOptIn ? "-i" : "-o");
        std::string v = take_arg(o, "an interface name");
        size_t at = arg_tok(o);
        if (v.empty() || v.size() > 15) fail_expected_value(at, "an interface name (1-15 characters)", v);
        Iface f;
        if (v.back() == '+') {
          f.prefix = true;
          f.name = v.substr(0, v.size() - 1);
        } else {
          f.name = v;
        }
        if (f.prefix && f.name.empty()) {
          // "-i +" matches every interface; iptables drops it (and its '!').
          if (inv) fail(toks_[bang].col, "'! -i +' would never match");
          break;
        }
        (id == kOptIn ? r.in : r.out) = f;
        (id == kOptIn ? r.inv_in : r.inv_out) = inv;
        break;
      }
      case kOptFrag:
        once("-f");
        if (o.inline_value) fail(col, "'-f' takes no value");
        r.fragment = true;
        r.inv_fragment = inv;
        break;
      case kOptMatch: {
        no_inv();
        std::string v = take_arg(o, "a match name");
        load_match(v, arg_tok(o));
        break;
      }
      case kOptJump:
      case kOptGoto: {
        no_inv();
        if (have_target) fail(col, "expected one -j/-g but found another '" + toks_[o.tok].text + "'");
        have_target = true;
        std::string v = take_arg(o, "a target or chain name");
        load_target(v, arg_tok(o), id == kOptGoto);
        break;
      }
      case kOptCounters: {
        no_inv();
        once("-c");
        std::string a = take_arg(o, "a packet count");
        auto pk = parse_uint(a, UINT64_MAX, 10);
        if (!pk) fail_expected_value(arg_tok(o), "a packet count", a);
        if (i_ >= toks_.size()) fail_expected(i_, "a byte count");
        auto by = parse_uint(toks_[i_].text, UINT64_MAX, 10);
        if (!by) fail_expected_value(i_, "a byte count", toks_[i_].text);
        ++i_;
        r.counters = Counters{*pk, *by};
        break;
      }
      default:
        fail(col, "expected a rule option but found the command '" + toks_[o.tok].text + "'");
    }
  }

  [[noreturn]] void fail_expected_value(size_t tok, const std::string& what, const std::string& v) {
    fail(toks_[tok].col, "expected " + what + " but found '" + v + "'");
  }

  void load_match(const std::string& name, size_t tok) {
    const auto* opts = match_opts(name);
    if (opts == nullptr) {
      fail(toks_[tok].col, "expected a supported match (tcp, udp, icmp, multiport, conntrack, "
                           "state, mark, connmark, statistic, recent, addrtype, comment, string, "
                           "limit, length, iprange, nfacct) but found '" + name + "'");
    }
    ExtState e;
    e.name = name;
    e.opts = opts;
    e.pos = pos_of(tok);
    e.match_index = rule_->matches.size();
    if (name == "tcp" || name == "udp") {
      TcpMatch m;
      m.udp = name == "udp";
      rule_->matches.push_back(m);
    } else if (name == "icmp") {
      rule_->matches.push_back(IcmpMatch{});
    } else if (name == "multiport") {
      if (!proto_ok_for_ports()) {
        fail(toks_[tok].col, "multiport needs '-p tcp', '-p udp', '-p udplite', '-p sctp' or "
                             "'-p dccp' before it");
      }
      rule_->matches.push_back(MultiportMatch{});
    } else if (name == "conntrack" || name == "state") {
      ConntrackMatch m;
      m.legacy_state = name == "state";
      rule_->matches.push_back(m);
    } else if (name == "mark" || name == "connmark") {
      MarkMatch m;
      m.connmark = name == "connmark";
      rule_->matches.push_back(m);
    } else if (name == "statistic") {
      rule_->matches.push_back(StatisticMatch{});
    } else if (name == "recent") {
      rule_->matches.push_back(RecentMatch{});
    } else if (name == "addrtype") {
      rule_->matches.push_back(AddrtypeMatch{});
    } else if (name == "comment") {
      rule_->matches.push_back(CommentMatch{});
    } else if (name == "string") {
      rule_->matches.push_back(StringMatch{});
    } else if (name == "limit") {
      LimitMatch m;
      m.avg = 10000u * 60 * 60 / 3;  // 3/hour
      rule_->matches.push_back(m);
    } else if (name == "length") {
      rule_->matches.push_back(LengthMatch{});
    } else if (name == "iprange") {
      rule_->matches.push_back(IprangeMatch{});
    } else if (name == "nfacct") {
      rule_->matches.push_back(NfacctMatch{});
    }
    exts_.push_back(std::move(e));
  }

  bool proto_ok_for_ports() const {
    const Rule& r = *rule_;
    if (r.inv_proto) return false;
    return r.proto == 6 || r.proto == 17 || r.proto == 136 || r.proto == 132 || r.proto == 33;
  }

  void load_target(const std::string& name, size_t tok, bool is_goto) {
    Rule& r = *rule_;
    const auto* opts = target_opts(name);
    if (is_goto && opts != nullptr) {
      fail(toks_[tok].col, "expected a chain name after -g but found the target '" + name + "'");
    }
    if (opts == nullptr) {
      if (is_builtin_target(name)) {
        fail(toks_[tok].col, "expected a supported target but found '" + name + "'");
      }
      if (name.empty() || name.size() > 28) {
        fail_expected_value(tok, "a chain name (1-28 characters)", name);
      }
      r.target = JumpTarget{name, is_goto};
      return;
    }
    if (name == "ACCEPT") r.target = VerdictTarget{Verdict::kAccept};
    else if (name == "DROP") r.target = VerdictTarget{Verdict::kDrop};
    else if (name == "RETURN") r.target = VerdictTarget{Verdict::kReturn};
    else if (name == "REJECT") r.target = RejectTarget{};
    else if (name == "DNAT") r.target = NatTarget{NatTarget::Kind::kDnat};
    else if (name == "SNAT") r.target = NatTarget{NatTarget::Kind::kSnat};
    else if (name == "MASQUERADE") r.target = NatTarget{NatTarget::Kind::kMasquerade};
    else if (name == "REDIRECT") r.target = NatTarget{NatTarget::Kind::kRedirect};
    else if (name == "MARK") r.target = MarkTarget{};
    else if (name == "CONNMARK") r.target = ConnmarkTarget{};
    else if (name == "LOG") r.target = LogTarget{};
    else if (name == "NOTRACK") r.target = NotrackTarget{false};
    else if (name == "CT") r.target = NotrackTarget{true};
    bool nat_target = name == "DNAT" || name == "SNAT" || name == "MASQUERADE" || name == "REDIRECT";
    if (nat_target && table_ != TableId::kNat) {
      fail(toks_[tok].col, "target " + name + " is only valid in the nat table, not in " +
                               table_name(table_));
    }
    if ((name == "NOTRACK" || name == "CT") && table_ != TableId::kRaw) {
      fail(toks_[tok].col, "target " + name + " is only valid in the raw table, not in " +
                               table_name(table_));
    }
    ExtState e;
    e.name = name;
    e.opts = opts;
    e.pos = pos_of(tok);
    e.is_target = true;
    exts_.push_back(std::move(e));
    target_ext_ = exts_.size() - 1;
  }

  // Finds the newest extension with this option; loads tcp/udp/icmp
  // implicitly after -p as iptables does. Returns false when unknown.
  bool handle_ext_option(const Opt& o, bool inv, size_t bang) {
    if (o.is_short) return false;
    for (int pass = 0; pass < 2; ++pass) {
      // exact names, newest first
      for (size_t k = exts_.size(); k-- > 0;) {
        for (const auto& spec : *exts_[k].opts) {
          if (o.name == spec.name) {
            apply_ext_option(exts_[k], spec, o, inv, bang);
            return true;
          }
        }
      }
      // unambiguous prefixes, newest first
      const OptSpec* hit = nullptr;
      size_t hit_ext = 0;
      for (size_t k = exts_.size(); k-- > 0 && hit == nullptr;) {
        for (const auto& spec : *exts_[k].opts) {
          if (std::string_view(spec.name).substr(0, o.name.size()) == o.name) {
            if (hit != nullptr && hit->id != spec.id) {
              fail(toks_[o.tok].col, "option '--" + o.name + "' is ambiguous");
            }
            if (hit == nullptr) {
              hit = &spec;
              hit_ext = k;
            }
          }
        }
      }
      if (hit != nullptr && exact_main(o.name) == 0 && !main_prefix(o.name)) {
        apply_ext_option(exts_[hit_ext], *hit, o, inv, bang);
        return true;
      }
      if (pass == 1) break;
      const Rule& r = *rule_;
      const char* implicit = r.inv_proto ? nullptr
                             : r.proto == 6  ? "tcp"
                             : r.proto == 17 ? "udp"
                             : r.proto == 1  ? "icmp"
                                             : nullptr;
      if (implicit == nullptr) return false;
      bool loaded = false;
      for (const auto& e : exts_) loaded |= e.name == implicit;
      if (loaded) return false;
      load_match(implicit, o.tok);
    }
    return false;
  }

  bool main_prefix(const std::string& name) {
    for (const auto& o : kMainOpts) {
      if (std::string_view(o.name).substr(0, name.size()) == name) return true;
    }
    return false;
  }

  void apply_ext_option(ExtState& e, const OptSpec& spec, const Opt& o, bool inv, size_t bang) {
    const uint32_t col = toks_[o.tok].col;
    if (inv && !invertible(spec.id)) {
      fail(toks_[bang].col, e.name + ": option '--" + spec.name + "' cannot be inverted");
    }
    bool repeatable = spec.id == kStrFrom || spec.id == kStrTo;
    if (!e.seen.insert(spec.id) && !repeatable) {
      fail(col, e.name + ": expected option '--" + spec.name +
                    "' only once but found it again");
    }
    std::string arg, arg2;
    size_t at = o.tok;
    if (spec.arg != Arg::kNone) {
      arg = take_arg(o, std::string("a value for --") + spec.name);
      at = arg_tok(o);
    } else if (o.inline_value) {
      fail(col, std::string("option '--") + spec.name + "' takes no value");
    }
    size_t at2 = at;
    if (spec.arg == Arg::kTwo) {
      if (i_ >= toks_.size() || toks_[i_].text.empty() ||
          (toks_[i_].text[0] == '-' && toks_[i_].text.size() > 1) || toks_[i_].text == "!") {
        fail_expected(i_, std::string("a second value for --") + spec.name);
      }
      at2 = i_;
      arg2 = toks_[i_++].text;
    }
    ExtCtx c{this, e, spec, arg, arg2, at, at2, inv, col};
    if (e.is_target) {
      apply_target_option(c);
    } else {
      apply_match_option(c, rule_->matches[e.match_index]);
    }
  }

  struct ExtCtx {
    LineParser* p;
    ExtState& e;
    const OptSpec& spec;
    const std::string& arg;
    const std::string& arg2;
    size_t at, at2;
    bool inv;
    uint32_t col;
    [[noreturn]] void bad(const std::string& what) const {
      p->fail(p->toks_[at].col, e.name + ": expected " + what + " for --" + spec.name +
                                    " but found '" + arg + "'");
    }
  };

  std::string proto_name_for_services() const {
    const Rule& r = *rule_;
    if (r.proto == 6) return "tcp";
    if (r.proto == 17) return "udp";
    return "";
  }

  void apply_match_option(const ExtCtx& c, Match& m) {
    std::visit([&](auto& mm) { apply_option(c, mm); }, m);
  }

  void apply_option(const ExtCtx& c, TcpMatch& m) {
    std::string proto = m.udp ? "udp" : "tcp";
    switch (c.spec.id) {
      case kTcpSport:
      case kTcpDport: {
        auto r = parse_port_range(c.arg, proto, m.udp);
        if (!r) c.bad("a port or port range");
        if (r->full()) {
          // nf_tables gets no expression for a full range, inverted or not.
          m.vanish_if_empty |= c.inv;
          break;
        }
        (c.spec.id == kTcpSport ? m.sport : m.dport) = *r;
        (c.spec.id == kTcpSport ? m.inv_sport : m.inv_dport) = c.inv;
        break;
      }
      case kTcpFlags:
      case kTcpSyn: {
        if (c.e.seen.count(kTcpFlags) + c.e.seen.count(kTcpSyn) > 1) {
          fail(c.col, "tcp: expected only one of --syn and --tcp-flags");
        }
        if (c.spec.id == kTcpSyn) {
          m.flags = std::pair<uint8_t, uint8_t>{0x17, 0x02};
        } else {
          auto mask = parse_flag_list(c.arg, names::kTcpFlags, names::kTcpFlagCount, true);
          if (!mask) c.bad("TCP flags (FIN,SYN,RST,PSH,ACK,URG,ALL,NONE)");
          auto cmp = parse_flag_list(c.arg2, names::kTcpFlags, names::kTcpFlagCount, true);
          if (!cmp) {
            fail(toks_[c.at2].col, "tcp: expected TCP flags for --tcp-flags but found '" +
                                       c.arg2 + "'");
          }
          m.flags = std::pair<uint8_t, uint8_t>{uint8_t(*mask), uint8_t(*cmp)};
        }
        m.inv_flags = c.inv;
        break;
      }
      case kTcpOption: {
        auto v = parse_uint(c.arg, 255);
        if (!v || *v == 0) c.bad("a TCP option number 1-255");
        m.option = uint8_t(*v);
        m.inv_option = c.inv;
        break;
      }
    }
  }

  void apply_option(const ExtCtx& c, IcmpMatch& m) {
    m.inv = c.inv;
    for (size_t k = 0; k < names::kIcmpNameCount; ++k) {
      const auto& n = names::kIcmpNames[k];
      if (c.arg == n.name) {
        m.type = n.type;
        m.code_lo = n.code_lo;
        m.code_hi = n.code_hi;
        return;
      }
    }
    size_t slash = c.arg.find('/');
    auto type = parse_uint(c.arg.substr(0, slash), 255);
    if (!type) c.bad("an ICMP type name or number[/code]");
    m.type = uint8_t(*type);
    m.code_lo = 0;
    m.code_hi = 255;
    if (slash != std::string::npos) {
      std::string code = c.arg.substr(slash + 1);
      size_t colon = code.find(':');
      auto lo = parse_uint(code.substr(0, colon), 255);
      if (!lo) c.bad("an ICMP code");
      m.code_lo = m.code_hi = uint8_t(*lo);
      if (colon != std::string::npos) {
        auto hi = parse_uint(code.substr(colon + 1), 255);
        if (!hi) c.bad("an ICMP code range");
        m.code_hi = uint8_t(*hi);
      }
    }
    if (m.type == 255) {
      // nf_tables keeps no expression for type 255: it is "any".
      m.code_lo = 0;
      m.code_hi = 255;
    }
  }

  void apply_option(const ExtCtx& c, MultiportMatch& m) {
    if (c.e.seen.size() > 1) fail(c.col, "multiport: expected only one of --sports, --dports, --ports");
    m.side = c.spec.id == kMpSports   ? MultiportMatch::Side::kSource
             : c.spec.id == kMpDports ? MultiportMatch::Side::kDest
                                      : MultiportMatch::Side::kEither;
    m.inv = c.inv;
    std::string proto = proto_name_for_services();
    size_t start = 0;
    unsigned slots = 0;
    while (true) {
      size_t comma = c.arg.find(',', start);
      std::string item = c.arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      auto r = parse_port_range(item, proto);
      if (!r || item.empty()) c.bad("a list of ports or port ranges");
      slots += r->lo == r->hi ? 1 : 2;
      m.ports.push_back(*r);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (slots > 15) c.bad("at most 15 ports (a range counts as two)");
  }

  void apply_option(const ExtCtx& c, ConntrackMatch& m) {
    auto net = [&](ConntrackMatch::Opt<Ipv4Net>& o) {
      auto n = parse_net(c.arg, false);  // libxt_conntrack keeps the host bits
      if (!n) c.bad("an IPv4 address[/mask]");
      o.value = *n;
      o.inv = c.inv;
    };
    auto port = [&](ConntrackMatch::Opt<PortRange>& o) {
      auto r = parse_port_range(c.arg, "", true);
      if (!r) c.bad("a port or port range");
      o.value = *r;
      o.inv = c.inv;
    };
    switch (c.spec.id) {
      case kCtState:
      case kStState: {
        auto bits = parse_flag_list(c.arg, names::kCtStates,
                                    m.legacy_state ? 5 : names::kCtStateCount, false);
        if (!bits) c.bad("a state list (INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED" +
                         std::string(m.legacy_state ? ")" : ",SNAT,DNAT)"));
        m.state.value = *bits;
        m.state.inv = c.inv;
        break;
      }
      case kCtProto: {
        std::optional<uint8_t> p;
        if (auto n = parse_uint(c.arg, 255)) p = uint8_t(*n);
        else p = names::protocol_number(c.arg);
        if (!p) c.bad("a protocol name or number");
        m.proto.value = *p;
        m.proto.inv = c.inv;
        break;
      }
      case kCtOrigSrc: net(m.orig_src); break;
      case kCtOrigDst: net(m.orig_dst); break;
      case kCtReplSrc: net(m.repl_src); break;
      case kCtReplDst: net(m.repl_dst); break;
      case kCtOrigSrcPort: port(m.orig_src_port); break;
      case kCtOrigDstPort: port(m.orig_dst_port); break;
      case kCtReplSrcPort: port(m.repl_src_port); break;
      case kCtReplDstPort: port(m.repl_dst_port); break;
      case kCtStatus: {
        auto bits = parse_flag_list(c.arg, names::kCtStatuses, names::kCtStatusCount, true);
        if (!bits) c.bad("a status list (NONE,EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED)");
        m.status.value = *bits;
        m.status.inv = c.inv;
        break;
      }
      case kCtExpire: {
        size_t colon = c.arg.find(':');
        auto lo = parse_uint(c.arg.substr(0, colon), 0xffffffff);
        auto hi = colon == std::string::npos ? lo : parse_uint(c.arg.substr(colon + 1), 0xffffffff);
        // The real tool accepts min > max (a range that never matches).
        if (!lo || !hi) c.bad("seconds or a min:max range");
        m.expire.value = std::pair<uint32_t, uint32_t>{uint32_t(*lo), uint32_t(*hi)};
        m.expire.inv = c.inv;
        break;
      }
      case kCtDir:
        if (c.arg == "ORIGINAL") m.dir = CtDir::kOriginal;
        else if (c.arg == "REPLY") m.dir = CtDir::kReply;
        else c.bad("ORIGINAL or REPLY");
        break;
    }
  }

  void apply_option(const ExtCtx& c, MarkMatch& m) {
    auto v = parse_mark(c.arg);
    if (!v) c.bad("value[/mask]");
    m.value = v->first;
    m.mask = v->second;
    m.inv = c.inv;
  }

  void apply_option(const ExtCtx& c, StatisticMatch& m) {
    switch (c.spec.id) {
      case kStatMode:
        if (c.arg == "random") m.mode = StatisticMatch::Mode::kRandom;
        else if (c.arg == "nth") m.mode = StatisticMatch::Mode::kNth;
        else c.bad("random or nth");
        break;
      case kStatProb: {
        char* end = nullptr;
        double p = std::strtod(c.arg.c_str(), &end);
        if (c.arg.empty() || *end != '\0' || !(p >= 0.0 && p <= 1.0)) c.bad("a probability 0..1");
        m.probability = uint32_t(std::lround(0x80000000 * p));
        m.inv |= c.inv;
        break;
      }
      case kStatEvery: {
        auto v = parse_uint(c.arg, 0xffffffff);
        if (!v || *v == 0) c.bad("a packet count >= 1");
        m.every = uint32_t(*v) - 1;
        m.inv |= c.inv;
        break;
      }
      case kStatPacket: {
        auto v = parse_uint(c.arg, 0xffffffff);
        if (!v) c.bad("a packet number");
        m.packet = uint32_t(*v);
        break;
      }
    }
  }

  void apply_option(const ExtCtx& c, RecentMatch& m) {
    auto command = [&](RecentMatch::Command cmd) {
      int n = int(c.e.seen.count(kRcSet) + c.e.seen.count(kRcRcheck) +
                  c.e.seen.count(kRcUpdate) + c.e.seen.count(kRcRemove));
      if (n > 1) fail(c.col, "recent: expected only one of --set, --rcheck, --update, --remove");
      m.command = cmd;
      m.inv = c.inv;
    };
    switch (c.spec.id) {
      case kRcSet: command(RecentMatch::Command::kSet); break;
      case kRcRcheck: command(RecentMatch::Command::kRcheck); break;
      case kRcUpdate: command(RecentMatch::Command::kUpdate); break;
      case kRcRemove: command(RecentMatch::Command::kRemove); break;
      case kRcSeconds: {
        auto v = parse_uint(c.arg, 0xffffffff);
        if (!v || *v == 0) c.bad("seconds >= 1");
        m.seconds = uint32_t(*v);
        break;
      }
      case kRcHitcount: {
        auto v = parse_uint(c.arg, 65535);
        if (!v) c.bad("a hit count 0-65535");
        m.hitcount = uint32_t(*v);
        break;
      }
      case kRcReap: m.reap = true; break;
      case kRcRttl: m.rttl = true; break;
      case kRcName: {
        if (c.arg.empty() || c.arg.size() > 199 || c.arg.find('/') != std::string::npos ||
            c.arg == "." || c.arg == "..") {
          c.bad("a list name (1-199 characters, no '/')");
        }
        m.name = c.arg;
        break;
      }
      case kRcMask: {
        auto v = parse_ipv4(c.arg, true);
        if (!v) c.bad("a dotted netmask");
        m.mask = *v;
        break;
      }
      case kRcRsource: m.rsource = true; break;
      case kRcRdest: m.rsource = false; break;
    }
  }

  void apply_option(const ExtCtx& c, AddrtypeMatch& m) {
    switch (c.spec.id) {
      case kAtSrc:
      case kAtDst: {
        auto bits = parse_flag_list(c.arg, names::kAddrTypes, names::kAddrTypeCount, false);
        if (!bits) c.bad("address types (UNSPEC,UNICAST,LOCAL,BROADCAST,ANYCAST,MULTICAST,...)");
        (c.spec.id == kAtSrc ? m.src : m.dst) = *bits;
        (c.spec.id == kAtSrc ? m.inv_src : m.inv_dst) = c.inv;
        break;
      }
      case kAtLimitIn: m.limit_iface_in = true; break;
      case kAtLimitOut: m.limit_iface_out = true; break;
    }
  }

  void apply_option(const ExtCtx& c, CommentMatch& m) {
    if (c.arg.size() > 255) c.bad("a comment of at most 255 characters");
    m.text = c.arg;
  }

  void apply_option(const ExtCtx& c, StringMatch& m) {
    switch (c.spec.id) {
      case kStrString:
      case kStrHex: {
        if (c.e.seen.count(kStrString) + c.e.seen.count(kStrHex) > 1) {
          fail(c.col, "string: expected only one of --string and --hex-string");
        }
        std::string pat;
        if (c.spec.id == kStrString) {
          pat = c.arg;
        } else if (!parse_hex_string(c.arg, pat)) {
          c.bad("a hex string like \"ab|0d0a|cd\"");
        }
        if (pat.empty() || pat.size() > 128) c.bad("a pattern of 1-128 bytes");
        m.pattern = pat;
        m.inv = c.inv;
        break;
      }
      case kStrAlgo:
        if (c.arg != "bm" && c.arg != "kmp") c.bad("bm or kmp");
        m.algo = c.arg;
        break;
      case kStrFrom:
      case kStrTo: {
        auto v = parse_uint(c.arg, 65535);
        if (!v) c.bad("an offset 0-65535");
        (c.spec.id == kStrFrom ? m.from : m.to) = uint16_t(*v);
        break;
      }
      case kStrIcase: m.icase = true; break;
    }
  }

  static bool parse_hex_string(const std::string& s, std::string& out) {
    bool hex = false;
    for (size_t k = 0; k < s.size(); ++k) {
      char ch = s[k];
      if (ch == '|') {
        hex = !hex;
        continue;
      }
      if (hex) {
        if (ch == ' ') continue;
        if (k + 1 >= s.size() || !std::isxdigit(static_cast<unsigned char>(ch)) ||
            !std::isxdigit(static_cast<unsigned char>(s[k + 1]))) {
          return false;
        }
        out.push_back(char(std::stoi(s.substr(k, 2), nullptr, 16)));
        ++k;
      } else if (ch == '\\' && k + 1 < s.size()) {
        out.push_back(s[++k]);
      } else {
        out.push_back(ch);
      }
    }
    return !hex;
  }

  void apply_option(const ExtCtx& c, LimitMatch& m) {
    if (c.spec.id == kLimBurst) {
      auto v = parse_uint(c.arg, 10000);
      if (!v) c.bad("a burst 0-10000");
      m.burst = uint32_t(*v);
      return;
    }
    size_t slash = c.arg.find('/');
    uint32_t mult = 10000;  // per second
    if (slash != std::string::npos) {
      std::string unit = c.arg.substr(slash + 1);
      auto is = [&](const char* full) {
        return !unit.empty() && unit.size() <= std::strlen(full) &&
               strncasecmp(unit.c_str(), full, unit.size()) == 0;
      };
      if (is("second")) mult = 10000;
      else if (is("minute")) mult = 10000u * 60;
      else if (is("hour")) mult = 10000u * 60 * 60;
      else if (is("day")) mult = 10000u * 60 * 60 * 24;
      else c.bad("a rate like 5/sec, 5/minute, 5/hour, 5/day");
    }
    auto n = parse_uint(c.arg.substr(0, slash), 0xffffffff, 10);
    if (!n || *n == 0) c.bad("a rate like 5/sec");
    if (*n > mult) c.bad("a rate of at most 10000/sec");
    m.avg = uint32_t(mult / *n);
  }

  void apply_option(const ExtCtx& c, LengthMatch& m) {
    size_t colon = c.arg.find(':');
    std::optional<uint64_t> lo, hi;
    if (colon == std::string::npos) {
      lo = hi = parse_uint(c.arg, 65535);
    } else {
      std::string a = c.arg.substr(0, colon), b = c.arg.substr(colon + 1);
      lo = a.empty() ? std::optional<uint64_t>(0) : parse_uint(a, 65535);
      hi = b.empty() ? std::optional<uint64_t>(65535) : parse_uint(b, 65535);
    }
    if (!lo || !hi) c.bad("a length or min:max range (0-65535)");
    m.lo = uint16_t(*lo);
    m.hi = uint16_t(*hi);
    m.inv = c.inv;
  }

  void apply_option(const ExtCtx& c, IprangeMatch& m) {
    size_t dash = c.arg.find('-');
    auto lo = parse_ipv4(c.arg.substr(0, dash));
    auto hi = dash == std::string::npos ? lo : parse_ipv4(c.arg.substr(dash + 1));
    if (!lo || !hi) c.bad("an address range a.b.c.d[-e.f.g.h]");
    auto r = std::pair<uint32_t, uint32_t>{*lo, *hi};
    (c.spec.id == kIrSrc ? m.src : m.dst) = r;
    (c.spec.id == kIrSrc ? m.inv_src : m.inv_dst) = c.inv;
  }

  void apply_option(const ExtCtx& c, NfacctMatch& m) {
    if (c.arg.empty() || c.arg.size() > 31) c.bad("an accounting object name (1-31 characters)");
    m.name = c.arg;
  }

  // ---- targets ----

  // "[ip[-ip]][:port[-port][/base]]" as libxt_DNAT/SNAT's parse_to.
  void parse_nat_range(const ExtCtx& c, NatTarget& t, bool allow_base) {
    std::string s = c.arg;
    size_t colon = s.find(':');
    std::string ips = s.substr(0, colon);
    if (!ips.empty()) {
      size_t dash = ips.find('-');
      auto lo = parse_ipv4(ips.substr(0, dash));
      auto hi = dash == std::string::npos ? lo : parse_ipv4(ips.substr(dash + 1));
      if (!lo || !hi) c.bad("an address[-address][:port[-port]]");
      t.has_addr = true;
      t.min_addr = *lo;
      t.max_addr = *hi;
    }
    if (colon != std::string::npos) {
      if (!proto_ok_for_ports()) {
        fail(toks_[c.at].col, c.e.name + ": expected -p tcp, udp, sctp or dccp before a port "
                                         "in '" + c.arg + "'");
      }
      std::string ports = s.substr(colon + 1);
      size_t slash = ports.find('/');
      if (slash != std::string::npos) {
        if (!allow_base) c.bad("a port range without '/'");
        std::string base = ports.substr(slash + 1);
        auto b = parse_port(base, "");
        if (!b || *b == 0) c.bad("a base port 1-65535 after '/'");
        t.base_port = *b;
        ports = ports.substr(0, slash);
      }
      if (!parse_nat_ports(ports, t)) c.bad("a port or port range");
    }
    if (!t.has_addr && !t.has_port) c.bad("an address or :port");
  }

  static bool parse_nat_ports(const std::string& ports, NatTarget& t) {
    if (!parse_uint(ports, 65535)) {
      if (auto svc = names::service_port(ports, "")) {  // a name may hold a '-'
        t.has_port = true;
        t.min_port = t.max_port = *svc;
        return true;
      }
    }
    size_t dash = ports.find('-');
    auto lo = parse_uint(ports.substr(0, dash), 65535, 10);
    auto hi = dash == std::string::npos ? lo : parse_uint(ports.substr(dash + 1), 65535, 10);
    if (!lo || !hi || *lo > *hi) return false;
    t.has_port = true;
    t.min_port = uint16_t(*lo);
    t.max_port = uint16_t(*hi);
    return true;
  }

  void apply_target_option(const ExtCtx& c) {
    Target& tg = rule_->target;
    if (auto* t = std::get_if<RejectTarget>(&tg)) {
      for (size_t k = 0; k < names::kRejectNameCount; ++k) {
        const auto& n = names::kRejectNames[k];
        if (c.arg == n.name || c.arg == n.alias) {
          t->with = n.with;
          return;
        }
      }
      c.bad("a reject type (icmp-net-unreachable, icmp-host-unreachable, icmp-port-unreachable, "
            "icmp-proto-unreachable, icmp-net-prohibited, icmp-host-prohibited, "
            "icmp-admin-prohibited, tcp-reset)");
    }
    if (auto* t = std::get_if<NatTarget>(&tg)) {
      switch (c.spec.id) {
        case kNatToDest:
        case kNatToSrc:
          parse_nat_range(c, *t, t->kind == NatTarget::Kind::kDnat);
          return;
        case kNatToPorts: {
          if (!proto_ok_for_ports()) {
            fail(toks_[c.at].col, c.e.name + ": expected -p tcp, udp, sctp or dccp before "
                                             "--to-ports");
          }
          if (!parse_nat_ports(c.arg, *t)) c.bad("a port or port range");
          return;
        }
        case kNatRandom: t->random = true; return;
        case kNatRandomFully: t->random_fully = true; return;
        case kNatPersistent: t->persistent = true; return;
      }
    }
    if (auto* t = std::get_if<MarkTarget>(&tg)) {
      if (c.e.seen.size() > 1) fail(c.col, "MARK: expected only one mark operation");
      auto v = parse_mark(c.arg);
      if (!v) c.bad("value[/mask]");
      bool has_mask = c.arg.find('/') != std::string::npos;
      if (c.spec.id != kMkSetXmark && c.spec.id != kMkSetMark && has_mask) c.bad("a value without mask");
      switch (c.spec.id) {
        case kMkSetXmark: *t = MarkTarget{v->first, v->second}; break;
        case kMkSetMark: *t = MarkTarget{v->first, v->first | v->second}; break;
        case kMkAndMark: *t = MarkTarget{0, ~v->first}; break;
        case kMkOrMark: *t = MarkTarget{v->first, v->first}; break;
        case kMkXorMark: *t = MarkTarget{v->first, 0}; break;
      }
      return;
    }
    if (auto* t = std::get_if<ConnmarkTarget>(&tg)) {
      auto mark = [&]() {
        auto v = parse_mark(c.arg);
        if (!v) c.bad("value[/mask]");
        return *v;
      };
      auto mask = [&]() {
        auto v = parse_uint(c.arg, 0xffffffff);
        if (!v) c.bad("a mask");
        return uint32_t(*v);
      };
      int ops = 0;
      for (int id : {kCmSetXmark, kCmSetMark, kCmAndMark, kCmOrMark, kCmXorMark, kCmSave, kCmRestore}) {
        ops += int(c.e.seen.count(id));
      }
      if (ops > 1) fail(c.col, "CONNMARK: expected only one mark operation");
      using M = ConnmarkTarget::Mode;
      switch (c.spec.id) {
        case kCmSetXmark: { auto v = mark(); t->mode = M::kSet; t->ctmark = v.first; t->ctmask = v.second; break; }
        case kCmSetMark: { auto v = mark(); t->mode = M::kSet; t->ctmark = v.first; t->ctmask = v.first | v.second; break; }
        case kCmAndMark: { auto v = mark(); t->mode = M::kSet; t->ctmark = 0; t->ctmask = ~v.first; break; }
        case kCmOrMark: { auto v = mark(); t->mode = M::kSet; t->ctmark = v.first; t->ctmask = v.first; break; }
        case kCmXorMark: { auto v = mark(); t->mode = M::kSet; t->ctmark = v.first; t->ctmask = 0; break; }
        case kCmSave: t->mode = M::kSave; break;
        case kCmRestore: t->mode = M::kRestore; break;
        case kCmNfmask: t->nfmask = mask(); break;
        case kCmCtmask: t->ctmask = mask(); break;
        case kCmMask: t->nfmask = t->ctmask = mask(); break;
      }
      return;
    }
    if (auto* t = std::get_if<LogTarget>(&tg)) {
      static const char* kLevels[] = {"emerg", "alert", "crit", "error",
                                      "warning", "notice", "info", "debug"};
      switch (c.spec.id) {
        case kLogLevel: {
          if (auto v = parse_uint(c.arg, 7)) {
            t->level = uint8_t(*v);
            return;
          }
          for (int k = 0; k < 8; ++k) {
            if (c.arg == kLevels[k] || (k == 3 && c.arg == "err") ||
                (k == 0 && c.arg == "panic") || (k == 4 && c.arg == "warn")) {
              t->level = uint8_t(k);
              return;
            }
          }
          c.bad("a log level 0-7 or a syslog level name");
        }
        case kLogPrefix:
          if (c.arg.empty() || c.arg.size() > 29) c.bad("a prefix of 1-29 characters");
          t->prefix = c.arg;
          t->has_prefix = true;
          return;
        case kLogTcpSeq: t->flags |= 0x01; return;
        case kLogTcpOpt: t->flags |= 0x02; return;
        case kLogIpOpt: t->flags |= 0x04; return;
        case kLogUid: t->flags |= 0x08; return;
        case kLogMac: t->flags |= 0x20; return;
      }
    }
    if (std::holds_alternative<NotrackTarget>(tg)) return;  // CT --notrack
    fail(c.col, "option '--" + std::string(c.spec.name) + "' is not valid here");
  }

  // ---- whole-rule checks (what iptables' final_check and the kernel refuse) --

  void finish_rule(Rule& r, const std::string& chain) {
    for (const auto& e : exts_) {
      auto failp = [&](const std::string& msg) {
        throw ParseFail{Error{e.pos, msg}};
      };
      if (e.is_target) {
        const Target& tg = r.target;
        if (e.name == "DNAT" || e.name == "SNAT") {
          if (e.seen.count(e.name == "DNAT" ? kNatToDest : kNatToSrc) == 0) {
            failp(e.name + ": expected --" + (e.name == "DNAT" ? "to-destination" : "to-source"));
          }
        }
        if (e.name == "MARK" && e.seen.empty()) failp("MARK: expected one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark");
        if (e.name == "CONNMARK") {
          bool any = false;
          for (int id : {kCmSetXmark, kCmSetMark, kCmAndMark, kCmOrMark, kCmXorMark, kCmSave, kCmRestore}) {
            any |= e.seen.count(id) > 0;
          }
          if (!any) failp("CONNMARK: expected one of --set-xmark, --set-mark, --save-mark, --restore-mark");
        }
        if (e.name == "CT" && e.seen.count(kCtNotrack) == 0) {
          failp("CT: expected --notrack (other CT options are not supported)");
        }
        if (const auto* rj = std::get_if<RejectTarget>(&tg)) {
          if (rj->with == RejectWith::kTcpReset && (r.proto != 6 || r.inv_proto)) {
            failp("REJECT: --reject-with tcp-reset needs -p tcp");
          }
        }
        continue;
      }
      const Match& m = r.matches[e.match_index];
      if (const auto* t = std::get_if<TcpMatch>(&m)) {
        uint8_t want = t->udp ? 17 : 6;
        if (r.proto != want || r.inv_proto) failp(std::string(t->udp ? "udp" : "tcp") + ": expected -p " + (t->udp ? "udp" : "tcp") + " with -m " + e.name);
      } else if (std::holds_alternative<IcmpMatch>(m)) {
        if (r.proto != 1 || r.inv_proto) failp("icmp: expected -p icmp with -m icmp");
        if (e.seen.empty()) failp("icmp: expected --icmp-type");
      } else if (std::holds_alternative<MultiportMatch>(m)) {
        if (e.seen.empty()) failp("multiport: expected --sports, --dports or --ports");
      } else if (const auto* ct = std::get_if<ConntrackMatch>(&m)) {
        if (e.seen.empty()) failp(e.name + ": expected at least one option");
        (void)ct;
      } else if (std::holds_alternative<MarkMatch>(m)) {
        if (e.seen.empty()) failp(e.name + ": expected --mark");
      } else if (const auto* st = std::get_if<StatisticMatch>(&m)) {
        bool random = e.seen.count(kStatMode) && st->mode == StatisticMatch::Mode::kRandom;
        bool nth = e.seen.count(kStatMode) && st->mode == StatisticMatch::Mode::kNth;
        if (!e.seen.count(kStatMode)) failp("statistic: expected --mode random|nth");
        if (random && (!e.seen.count(kStatProb) || e.seen.count(kStatEvery) || e.seen.count(kStatPacket))) {
          failp("statistic: --mode random takes --probability only");
        }
        if (nth && (!e.seen.count(kStatEvery) || !e.seen.count(kStatPacket) || e.seen.count(kStatProb))) {
          failp("statistic: --mode nth takes --every and --packet");
        }
        if (nth && st->packet > st->every) failp("statistic: --packet must be less than --every");
      } else if (const auto* rc = std::get_if<RecentMatch>(&m)) {
        if (!(e.seen.count(kRcSet) || e.seen.count(kRcRcheck) || e.seen.count(kRcUpdate) || e.seen.count(kRcRemove))) {
          failp("recent: expected one of --set, --rcheck, --update, --remove");
        }
        if (rc->command == RecentMatch::Command::kSet && rc->rttl) failp("recent: --rttl cannot be used with --set");
        if ((rc->command == RecentMatch::Command::kSet || rc->command == RecentMatch::Command::kRemove) &&
            (rc->seconds || rc->hitcount)) {
          failp("recent: --seconds and --hitcount need --rcheck or --update");
        }
        if (rc->reap && !rc->seconds) failp("recent: --reap needs --seconds");
      } else if (const auto* at = std::get_if<AddrtypeMatch>(&m)) {
        if (at->src == 0 && at->dst == 0) failp("addrtype: expected --src-type or --dst-type");
        if (at->limit_iface_in && at->limit_iface_out) failp("addrtype: --limit-iface-in and --limit-iface-out exclude each other");
        if (at->limit_iface_in && (chain == "OUTPUT" || chain == "POSTROUTING")) failp("addrtype: --limit-iface-in is not valid in " + chain);
        if (at->limit_iface_out && (chain == "PREROUTING" || chain == "INPUT")) failp("addrtype: --limit-iface-out is not valid in " + chain);
      } else if (std::holds_alternative<CommentMatch>(m)) {
        if (e.seen.empty()) failp("comment: expected --comment");
      } else if (const auto* s = std::get_if<StringMatch>(&m)) {
        if (s->pattern.empty()) failp("string: expected --string or --hex-string");
        if (s->algo.empty()) failp("string: expected --algo bm|kmp");
        if (s->from > s->to) failp("string: --from must not exceed --to");
      } else if (std::holds_alternative<LengthMatch>(m)) {
        if (e.seen.empty()) failp("length: expected --length");
      } else if (std::holds_alternative<IprangeMatch>(m)) {
        if (e.seen.empty()) failp("iprange: expected --src-range or --dst-range");
      } else if (std::holds_alternative<NfacctMatch>(m)) {
        if (e.seen.empty()) failp("nfacct: expected --nfacct-name");
      }
    }
    // DNAT/SNAT ports without a protocol that has ports.
    if (const auto* n = std::get_if<NatTarget>(&r.target)) {
      if (n->kind == NatTarget::Kind::kRedirect && n->has_port && !proto_ok_for_ports()) {
        throw ParseFail{Error{r.pos, "REDIRECT: --to-ports needs -p tcp, udp, sctp or dccp"}};
      }
    }
    if (chain == "OUTPUT" || chain == "POSTROUTING") {
      if (!r.in.empty()) throw ParseFail{Error{r.pos, "expected no -i in " + chain + " (no input interface there)"}};
    }
    if (chain == "PREROUTING" || chain == "INPUT") {
      if (!r.out.empty()) throw ParseFail{Error{r.pos, "expected no -o in " + chain + " (no output interface there)"}};
    }
    merge_adjacent_port_matches(r);
  }

  // The nf_tables backend stores -m tcp/-m udp ports as payload expressions
  // and gives back one match for adjacent ones.
  void merge_adjacent_port_matches(Rule& r) {
    for (size_t k = 1; k < r.matches.size(); ++k) {
      auto* a = std::get_if<TcpMatch>(&r.matches[k - 1]);
      auto* b = std::get_if<TcpMatch>(&r.matches[k]);
      if (a == nullptr || b == nullptr || a->udp != b->udp) continue;
      bool clash = (a->sport && b->sport) || (a->dport && b->dport) || (a->flags && b->flags) ||
                   (a->option && b->option);
      if (clash) {
        throw ParseFail{Error{r.pos, "expected at most one --sport/--dport/--tcp-flags per "
                                     "protocol match"}};
      }
      if (b->sport) { a->sport = b->sport; a->inv_sport = b->inv_sport; }
      if (b->dport) { a->dport = b->dport; a->inv_dport = b->inv_dport; }
      if (b->flags) { a->flags = b->flags; a->inv_flags = b->inv_flags; }
      if (b->option) { a->option = b->option; a->inv_option = b->inv_option; }
      r.matches.erase(r.matches.begin() + long(k));
      --k;
    }
  }

  std::vector<Token> toks_;
  SourcePos line_pos_;
  TableId table_;
  size_t i_ = 0;
  Rule* rule_ = nullptr;
  std::vector<ExtState> exts_;
  std::optional<size_t> target_ext_;
};

// ---- the file ---------------------------------------------------------------

bool is_valid_chain_name(std::string_view n) {
  return !n.empty() && n.size() <= 28 && n[0] != '-' && n[0] != '!' && !is_builtin_target(n) &&
         n.find(' ') == n.npos;
}

bool same_rule_spec(const Rule& a, const Rule& b);

class FileParser {
 public:
  FileParser(Ruleset base, std::string_view file, const ParseOptions& opts)
      : rs_(std::move(base)), file_(file), opts_(opts) {}

  Expected<Ruleset> run(std::string_view text) {
    try {
      parse_text(text);
    } catch (const ParseFail& f) {
      return f.error;
    }
    auto errors = check_ruleset(rs_);
    if (!errors.empty()) return errors.front();
    return std::move(rs_);
  }

 private:
  [[noreturn]] void fail(uint32_t col, std::string msg) {
    throw ParseFail{Error{SourcePos{file_, line_, col}, std::move(msg)}};
  }

  void parse_text(std::string_view text) {
    size_t start = 0;
    line_ = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      std::string_view line = text.substr(start, nl == text.npos ? text.npos : nl - start);
      start = nl == text.npos ? text.size() : nl + 1;
      ++line_;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      parse_line(line);
    }
    if (table_) {
      ++line_;
      fail(1, std::string("expected COMMIT for table '") + table_name(*table_) +
                  "' but found end of file");
    }
  }

  void parse_line(std::string_view line) {
    size_t first = line.find_first_not_of(" \t");
    if (first == line.npos || line[first] == '#') return;
    uint32_t col = uint32_t(first + 1);
    std::string_view body = line.substr(first);
    if (body[0] == '*') {
      if (table_) fail(col, std::string("expected COMMIT before a new table but found '") + std::string(body) + "'");
      std::string_view name = body.substr(1);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      auto t = table_from_name(name);
      if (!t) fail(col + 1, "expected a table (raw, mangle, nat, filter) but found '" + std::string(name) + "'");
      table_ = *t;
      Table& tb = rs_.table(*t);
      if (!opts_.noflush || !tb.present) tb = make_table(*t);
      reindex();
      return;
    }
    if (!table_) {
      fail(col, "expected a *table line but found '" + std::string(body.substr(0, body.find(' '))) + "'");
    }
    if (body.substr(0, 6) == "COMMIT" && body.find_first_not_of(" \t", 6) == body.npos) {
      commit_table();
      table_.reset();
      return;
    }
    if (body[0] == ':') {
      parse_chain_line(body, col);
      return;
    }
    SourcePos lp{file_, line_, 0};
    auto toks = tokenize_line(line, lp);
    if (!toks) throw ParseFail{toks.error()};
    std::vector<Token> t = std::move(*toks);
    std::optional<Counters> counters;
    if (!t.empty() && t[0].text.size() > 2 && t[0].text[0] == '[') {
      counters = parse_counters(t[0].text, t[0].col);
      t.erase(t.begin());
    }
    LineParser lpz(std::move(t), lp, *table_);
    auto cmd = lpz.parse(0);
    if (counters && cmd.has_rule) cmd.rule.counters = counters;
    apply_command(cmd);
  }

  Counters parse_counters(const std::string& s, uint32_t col) {
    if (s.size() < 5 || s.front() != '[' || s.back() != ']') fail(col, "expected [packets:bytes] but found '" + s + "'");
    std::string inner = s.substr(1, s.size() - 2);
    size_t colon = inner.find(':');
    auto p = parse_uint(inner.substr(0, colon), UINT64_MAX, 10);
    auto b = colon == inner.npos ? std::nullopt : parse_uint(inner.substr(colon + 1), UINT64_MAX, 10);
    if (!p || !b) fail(col, "expected [packets:bytes] but found '" + s + "'");
    return Counters{*p, *b};
  }

  void parse_chain_line(std::string_view body, uint32_t col) {
    SourcePos lp{file_, line_, 0};
    auto toks = tokenize_line(std::string(col - 1, ' ') + std::string(body.substr(1)), lp);
    if (!toks) throw ParseFail{toks.error()};
    auto& t = *toks;
    if (t.empty()) fail(col + 1, "expected a chain name after ':' but found end of line");
    const std::string name = t[0].text;
    const uint32_t name_col = col + 1;
    if (t.size() < 2) fail(name_col + uint32_t(name.size()), "expected a policy (ACCEPT, DROP or -) after the chain name but found end of line");
    const std::string policy = t[1].text;
    Counters counters;
    if (t.size() >= 3) counters = parse_counters(t[2].text, t[2].col + 1);
    if (t.size() > 3) fail(t[3].col + 1, "expected end of line but found '" + t[3].text + "'");
    Table& tb = rs_.table(*table_);
    Chain* c = find_chain(name);
    if (c != nullptr && c->builtin) {
      if (policy == "ACCEPT" || policy == "DROP") {
        c->policy = policy == "ACCEPT" ? Policy::kAccept : Policy::kDrop;
        c->counters = counters;
      } else if (policy != "-") {
        fail(t[1].col + 1, "expected a policy ACCEPT or DROP but found '" + policy + "'");
      }
      if (opts_.noflush) c->rules.clear();
      return;
    }
    if (hook_from_chain_name(name)) {
      fail(name_col, "expected a chain of table " + std::string(table_name(*table_)) + " but found built-in chain '" + name + "'");
    }
    if (policy != "-") {
      fail(t[1].col + 1, "expected '-' (a user chain has no policy) but found '" + policy + "'");
    }
    if (!is_valid_chain_name(name)) fail(name_col, "expected a chain name (1-28 characters, not a target) but found '" + name + "'");
    if (c != nullptr) {
      c->rules.clear();
      return;
    }
    Chain nc;
    nc.name = name;
    nc.pos = SourcePos{file_, line_, name_col};
    tb.chains.push_back(std::move(nc));
    if (!index_[size_t(*table_)].empty()) index_[size_t(*table_)][name] = tb.chains.size() - 1;
  }

  // Chain lookup by name for the current table (kube-proxy files have tens
  // of thousands of chains; Table::find is linear).
  Chain* find_chain(const std::string& name) {
    auto& idx = index_[size_t(*table_)];
    Table& tb = rs_.table(*table_);
    if (idx.empty() && !tb.chains.empty()) {
      idx.clear();
      for (size_t k = 0; k < tb.chains.size(); ++k) idx[tb.chains[k].name] = k;
    }
    auto it = idx.find(name);
    return it == idx.end() ? nullptr : &tb.chains[it->second];
  }
  void reindex() { index_[size_t(*table_)].clear(); }

  Chain& chain_for(const LineParser::Command& cmd) {
    Chain* c = find_chain(cmd.chain);
    if (c == nullptr) {
      throw ParseFail{Error{cmd.chain_pos, "expected a declared chain of table " +
                                               std::string(table_name(*table_)) + " but found '" + cmd.chain + "'"}};
    }
    return *c;
  }

  void apply_command(LineParser::Command& cmd) {
    Table& tb = rs_.table(*table_);
    switch (cmd.op) {
      case kOptAppend: {
        Chain& c = chain_for(cmd);
        c.rules.push_back(std::move(cmd.rule));
        break;
      }
      case kOptInsert: {
        Chain& c = chain_for(cmd);
        size_t at = cmd.rulenum ? *cmd.rulenum - 1 : 0;
        if (at > c.rules.size()) {
          throw ParseFail{Error{cmd.chain_pos, "expected a rule number of at most " + std::to_string(c.rules.size() + 1) + " for -I " + cmd.chain}};
        }
        c.rules.insert(c.rules.begin() + long(at), std::move(cmd.rule));
        break;
      }
      case kOptDelete: {
        Chain& c = chain_for(cmd);
        if (cmd.rulenum) {
          if (*cmd.rulenum > c.rules.size()) {
            throw ParseFail{Error{cmd.chain_pos, "expected a rule number of at most " + std::to_string(c.rules.size()) + " for -D " + cmd.chain}};
          }
          c.rules.erase(c.rules.begin() + long(*cmd.rulenum - 1));
          break;
        }
        auto it = std::find_if(c.rules.begin(), c.rules.end(),
                               [&](const Rule& r) { return same_rule_spec(r, cmd.rule); });
        if (it == c.rules.end()) {
          throw ParseFail{Error{cmd.rule.pos, "expected a rule that exists in " + cmd.chain + " for -D (no such rule)"}};
        }
        c.rules.erase(it);
        break;
      }
      case kOptNew: {
        if (find_chain(cmd.chain) != nullptr) {
          throw ParseFail{Error{cmd.chain_pos, "expected a new chain name but chain '" + cmd.chain + "' already exists"}};
        }
        if (!is_valid_chain_name(cmd.chain) || hook_from_chain_name(cmd.chain)) {
          throw ParseFail{Error{cmd.chain_pos, "expected a chain name (1-28 characters, not a target) but found '" + cmd.chain + "'"}};
        }
        Chain nc;
        nc.name = cmd.chain;
        nc.pos = cmd.chain_pos;
        tb.chains.push_back(std::move(nc));
        if (!index_[size_t(*table_)].empty()) index_[size_t(*table_)][cmd.chain] = tb.chains.size() - 1;
        break;
      }
      case kOptDeleteChain: {
        if (cmd.chain.empty()) {
          std::erase_if(tb.chains, [](const Chain& c) { return !c.builtin; });
          reindex();
          break;
        }
        Chain& c = chain_for(cmd);
        if (c.builtin) throw ParseFail{Error{cmd.chain_pos, "expected a user chain for -X but found built-in chain '" + cmd.chain + "'"}};
        std::string name = c.name;
        std::erase_if(tb.chains, [&](const Chain& x) { return x.name == name; });
        reindex();
        break;
      }
      case kOptFlush: {
        if (cmd.chain.empty()) {
          for (auto& c : tb.chains) c.rules.clear();
          break;
        }
        chain_for(cmd).rules.clear();
        break;
      }
      case kOptPolicy: {
        Chain& c = chain_for(cmd);
        if (!c.builtin) throw ParseFail{Error{cmd.chain_pos, "expected a built-in chain for -P but found user chain '" + cmd.chain + "'"}};
        if (cmd.policy != "ACCEPT" && cmd.policy != "DROP") {
          throw ParseFail{Error{cmd.policy_pos, "expected a policy ACCEPT or DROP but found '" + cmd.policy + "'"}};
        }
        c.policy = cmd.policy == "ACCEPT" ? Policy::kAccept : Policy::kDrop;
        break;
      }
    }
  }

  // At COMMIT: every jump of this table names a chain of this table.
  void commit_table() {
    const Table& tb = rs_.table(*table_);
    for (const auto& c : tb.chains) {
      for (const auto& r : c.rules) {
        if (const auto* j = std::get_if<JumpTarget>(&r.target)) {
          const Chain* t = find_chain(j->chain);
          if (t == nullptr) {
            throw ParseFail{Error{r.pos, "expected a target or a chain of table " + std::string(table_name(*table_)) + " but found '" + j->chain + "' (no such chain)"}};
          }
          if (t->builtin) {
            throw ParseFail{Error{r.pos, "expected a user chain to jump to but found built-in chain '" + j->chain + "'"}};
          }
        }
      }
    }
  }

  Ruleset rs_;
  std::string file_;
  ParseOptions opts_;
  uint32_t line_ = 0;
  std::optional<TableId> table_;
  std::array<std::unordered_map<std::string, size_t>, kTableCount> index_;
};

}  // namespace

// iptables -D RULE-SPEC deletes the first rule with the same specification.
// Comparing the printed form is what "same" means to the user.
std::string rule_spec_text(const Rule& r);
namespace {
bool same_rule_spec(const Rule& a, const Rule& b) { return rule_spec_text(a) == rule_spec_text(b); }
}  // namespace

Expected<std::vector<Token>> tokenize_line(std::string_view line, const SourcePos& line_pos) {
  // As iptables' add_param_to_argv: '"' opens and closes quoting, '\'
  // escapes the next character inside quotes, a closing quote ends the word.
  std::vector<Token> out;
  std::string cur;
  bool in_word = false, quote_open = false, escaped = false;
  uint32_t word_col = 0, quote_col = 0;
  auto flush = [&]() {
    out.push_back(Token{cur, word_col});
    cur.clear();
    in_word = false;
  };
  for (size_t k = 0; k < line.size(); ++k) {
    char ch = line[k];
    uint32_t col = uint32_t(k + 1);
    if (quote_open) {
      if (escaped) {
        cur.push_back(ch);
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        quote_open = false;
        flush();
      } else {
        cur.push_back(ch);
      }
      continue;
    }
    if (ch == '"') {
      quote_open = true;
      quote_col = col;
      if (!in_word) {
        in_word = true;
        word_col = col;
      }
      continue;
    }
    if (ch == ' ' || ch == '\t') {
      if (in_word && !cur.empty()) flush();
      continue;
    }
    if (!in_word) {
      in_word = true;
      word_col = col;
    }
    cur.push_back(ch);
  }
  if (quote_open) {
    SourcePos p = line_pos;
    p.col = quote_col;
    return Error{p, "expected a closing '\"' but found end of line"};
  }
  if (in_word && !cur.empty()) flush();
  return out;
}

Expected<Ruleset> parse_ruleset(std::string_view text, std::string_view file,
                                const ParseOptions& options) {
  return apply_ruleset(Ruleset{}, text, file, options);
}

Expected<Ruleset> apply_ruleset(const Ruleset& base, std::string_view text, std::string_view file,
                                const ParseOptions& options) {
  const names::LookupCache lookups;
  FileParser p(base, file, options);
  return p.run(text);
}

// ---- whole-ruleset checks ---------------------------------------------------

namespace {

// Hooks a target may run from (0: any).
HookMask target_hooks(const Target& t) {
  if (const auto* n = std::get_if<NatTarget>(&t)) {
    switch (n->kind) {
      case NatTarget::Kind::kDnat:
      case NatTarget::Kind::kRedirect:
        return hook_bit(Hook::kPrerouting) | hook_bit(Hook::kOutput);
      case NatTarget::Kind::kSnat:
        return hook_bit(Hook::kPostrouting) | hook_bit(Hook::kInput);
      case NatTarget::Kind::kMasquerade:
        return hook_bit(Hook::kPostrouting);
    }
  }
  if (std::holds_alternative<RejectTarget>(t)) {
    return hook_bit(Hook::kInput) | hook_bit(Hook::kForward) | hook_bit(Hook::kOutput);
  }
  return 0;
}

HookMask match_hooks(const Match& m) {
  if (const auto* a = std::get_if<AddrtypeMatch>(&m)) {
    if (a->limit_iface_in) return hook_bit(Hook::kPrerouting) | hook_bit(Hook::kInput) | hook_bit(Hook::kForward);
    if (a->limit_iface_out) return hook_bit(Hook::kPostrouting) | hook_bit(Hook::kOutput) | hook_bit(Hook::kForward);
  }
  return 0;
}

const char* target_label(const Target& t) {
  if (const auto* n = std::get_if<NatTarget>(&t)) {
    switch (n->kind) {
      case NatTarget::Kind::kDnat: return "DNAT";
      case NatTarget::Kind::kSnat: return "SNAT";
      case NatTarget::Kind::kMasquerade: return "MASQUERADE";
      case NatTarget::Kind::kRedirect: return "REDIRECT";
    }
  }
  if (std::holds_alternative<RejectTarget>(t)) return "REJECT";
  return "target";
}

std::string hooks_text(HookMask m) {
  std::string s;
  for (int h = 0; h < kHookCount; ++h) {
    if (m & hook_bit(Hook(h))) {
      if (!s.empty()) s += '/';
      s += hook_name(Hook(h));
    }
  }
  return s;
}

}  // namespace

std::vector<Error> check_ruleset(const Ruleset& rs) {
  std::vector<Error> errors;
  for (int ti = 0; ti < kTableCount; ++ti) {
    const Table& tb = rs.tables[size_t(ti)];
    if (!tb.present) continue;
    const ChainIndex index(tb);
    // Where each chain's rules start in `jump_to`: the chain index each
    // rule jumps to (resolved once, by the walk below), or `none`.
    const uint32_t none = uint32_t(tb.chains.size());
    std::vector<size_t> first_rule(tb.chains.size() + 1, 0);
    for (size_t k = 0; k < tb.chains.size(); ++k) first_rule[k + 1] = first_rule[k] + tb.chains[k].rules.size();
    std::vector<uint32_t> jump_to(first_rule.back(), none);
    // Jumps and loops (depth-first with colours). A chain is finished after
    // every chain it jumps to: `finished` lists them in that order.
    std::vector<int> colour(tb.chains.size(), 0);
    std::vector<uint32_t> finished;
    finished.reserve(tb.chains.size());
    bool loop_reported = false;
    std::function<void(size_t)> visit = [&](size_t c) {
      colour[c] = 1;
      for (size_t i = 0; i < tb.chains[c].rules.size(); ++i) {
        const Rule& r = tb.chains[c].rules[i];
        const auto* j = std::get_if<JumpTarget>(&r.target);
        if (j == nullptr) continue;
        const uint32_t to = index.find(j->chain);
        if (to == index.size()) {
          errors.push_back(Error{r.pos, "expected a declared chain but found jump to '" + j->chain + "'"});
          continue;
        }
        jump_to[first_rule[c] + i] = to;
        if (colour[to] == 1) {
          if (!loop_reported) {
            errors.push_back(Error{r.pos, "expected a loop-free chain graph but '" + tb.chains[c].name + "' jumps back to '" + j->chain + "'"});
            loop_reported = true;
          }
          continue;
        }
        if (colour[to] == 0) visit(to);
      }
      colour[c] = 2;
      finished.push_back(uint32_t(c));
    };
    for (size_t k = 0; k < tb.chains.size(); ++k) {
      if (colour[k] == 0) visit(k);
    }
    if (!errors.empty()) return errors;
    // Hooks reaching each chain: from the built-ins down the DAG, in one
    // pass in reverse finishing order (every chain before those it jumps to).
    std::vector<HookMask> reach(tb.chains.size(), 0);
    for (size_t k = 0; k < tb.chains.size(); ++k) {
      if (tb.chains[k].builtin) reach[k] = hook_bit(*tb.chains[k].builtin);
    }
    for (auto c = finished.rbegin(); c != finished.rend(); ++c) {
      if (reach[*c] == 0) continue;
      for (size_t i = first_rule[*c]; i < first_rule[*c + 1]; ++i) {
        if (jump_to[i] != none) reach[jump_to[i]] |= reach[*c];
      }
    }
    for (size_t k = 0; k < tb.chains.size(); ++k) {
      for (const auto& r : tb.chains[k].rules) {
        HookMask allowed = target_hooks(r.target);
        if (allowed != 0 && (reach[k] & ~allowed) != 0) {
          errors.push_back(Error{r.pos, std::string("expected ") + target_label(r.target) + " only in " + table_name(TableId(ti)) + " " + hooks_text(allowed) + " but chain '" + tb.chains[k].name + "' is reached from " + hooks_text(reach[k] & ~allowed)});
        }
        for (const auto& m : r.matches) {
          HookMask mh = match_hooks(m);
          if (mh != 0 && (reach[k] & ~mh) != 0) {
            errors.push_back(Error{r.pos, "expected addrtype --limit-iface-* only in " + hooks_text(mh) + " but chain '" + tb.chains[k].name + "' is reached from " + hooks_text(reach[k] & ~mh)});
          }
        }
      }
    }
  }
  return errors;
}

}  // namespace dpgate::rules
