// The rules module's data model: an iptables ruleset (tables -> chains ->
// rules) as plain values with source positions, as parsed from
// iptables-restore text. Control thread only; the data plane never sees it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace dpgate::rules {

struct SourcePos {
  std::string file;
  uint32_t line = 0;
  uint32_t col = 0;
};

// A user-facing error: "file:line:col: message".
struct Error {
  SourcePos pos;
  std::string message;
  std::string to_string() const;
};

// A value or an Error (std::expected is C++23).
template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}
  Expected(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Tables in netfilter priority order within a hook.
enum class TableId : uint8_t { kRaw, kMangle, kNat, kFilter };
constexpr int kTableCount = 4;

enum class Hook : uint8_t { kPrerouting, kInput, kForward, kOutput, kPostrouting };
constexpr int kHookCount = 5;
using HookMask = uint8_t;
constexpr HookMask hook_bit(Hook h) { return HookMask(1u << unsigned(h)); }

const char* table_name(TableId t);
const char* hook_name(Hook h);
std::optional<TableId> table_from_name(std::string_view name);
std::optional<Hook> hook_from_chain_name(std::string_view name);
// Built-in chains of a table, in iptables-save order.
const std::vector<Hook>& table_hooks(TableId t);

// Host byte order throughout: addr 10.0.0.1 is 0x0a000001.
struct Ipv4Net {
  uint32_t addr = 0;
  uint32_t mask = 0;
  bool contains(uint32_t a) const { return ((a ^ addr) & mask) == 0; }
  bool operator==(const Ipv4Net&) const = default;
};

struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 65535;
  bool contains(uint16_t p) const { return p >= lo && p <= hi; }
  bool full() const { return lo == 0 && hi == 65535; }
  bool operator==(const PortRange&) const = default;
};

struct Counters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  bool operator==(const Counters&) const = default;
};

// An interface name as iptables takes it: "eth0", or "eth+" (prefix).
struct Iface {
  std::string name;  // without the trailing '+'
  bool prefix = false;
  bool empty() const { return name.empty() && !prefix; }
  bool matches(std::string_view ifname) const;
};

// ---- matches (-m NAME); every option keeps its own '!' -------------------

struct TcpMatch {
  std::optional<PortRange> sport, dport;
  bool inv_sport = false, inv_dport = false;
  std::optional<std::pair<uint8_t, uint8_t>> flags;  // mask, compare
  bool inv_flags = false;
  std::optional<uint8_t> option;
  bool inv_option = false;
  bool udp = false;  // the same shape serves -m udp (no flags/option)
  // "! --sport 0:65535" leaves no expression in nf_tables; iptables-save then
  // prints nothing for the match when no other option is left.
  bool vanish_if_empty = false;
  bool empty() const { return !sport && !dport && !flags && !option; }
};

struct IcmpMatch {
  uint8_t type = 255;  // 255 with codes 0..255 is "any"
  uint8_t code_lo = 0, code_hi = 255;
  bool inv = false;
};

struct MultiportMatch {
  enum class Side : uint8_t { kSource, kDest, kEither } side = Side::kDest;
  std::vector<PortRange> ports;
  bool inv = false;
};

// Conntrack state bits as xt_conntrack numbers them.
namespace ct_state {
constexpr uint16_t kInvalid = 1 << 0;
constexpr uint16_t kEstablished = 1 << 1;
constexpr uint16_t kRelated = 1 << 2;
constexpr uint16_t kNew = 1 << 3;
constexpr uint16_t kUntracked = 1 << 6;
constexpr uint16_t kSnat = 1 << 7;
constexpr uint16_t kDnat = 1 << 8;
}  // namespace ct_state

// Whether a packet walks the nat table: only while its connection has no
// binding yet, i.e. the first packet of a tracked connection (as the
// kernel's nf_nat_inet_fn); `confirmed`: a packet of it was already seen.
constexpr bool walks_nat(uint16_t state, bool confirmed) {
  return !confirmed && (state & ct_state::kNew) != 0 && (state & (ct_state::kUntracked | ct_state::kInvalid)) == 0;
}

// Conntrack status bits as the kernel's IPS_* numbers them.
namespace ct_status {
constexpr uint16_t kExpected = 1 << 0;
constexpr uint16_t kSeenReply = 1 << 1;
constexpr uint16_t kAssured = 1 << 2;
constexpr uint16_t kConfirmed = 1 << 3;
}  // namespace ct_status

enum class CtDir : uint8_t { kOriginal, kReply };

struct ConntrackMatch {
  template <class T>
  struct Opt {
    std::optional<T> value;
    bool inv = false;
  };
  Opt<uint16_t> state;
  Opt<uint8_t> proto;
  Opt<Ipv4Net> orig_src, orig_dst, repl_src, repl_dst;
  Opt<PortRange> orig_src_port, orig_dst_port, repl_src_port, repl_dst_port;
  Opt<uint16_t> status;
  Opt<std::pair<uint32_t, uint32_t>> expire;
  std::optional<CtDir> dir;
  bool legacy_state = false;  // written as -m state --state
};

struct MarkMatch {
  uint32_t value = 0;
  uint32_t mask = 0xffffffff;
  bool inv = false;
  bool connmark = false;  // -m connmark (the conntrack's mark)
};

struct StatisticMatch {
  enum class Mode : uint8_t { kRandom, kNth } mode = Mode::kRandom;
  uint32_t probability = 0;  // lround(p * 2^31), compared with a 31-bit random value
  uint32_t every = 0;        // stored as the kernel does: every - 1
  uint32_t packet = 0;
  bool inv = false;
};

struct RecentMatch {
  enum class Command : uint8_t { kSet, kRcheck, kUpdate, kRemove } command = Command::kSet;
  std::string name = "DEFAULT";
  uint32_t seconds = 0;
  uint32_t hitcount = 0;
  bool reap = false;
  bool rttl = false;
  uint32_t mask = 0xffffffff;
  bool rsource = true;  // false: --rdest
  bool inv = false;
};

// RTN_* address types as bits (1 << RTN_x).
namespace addr_type {
constexpr uint16_t kUnspec = 1 << 0;
constexpr uint16_t kUnicast = 1 << 1;
constexpr uint16_t kLocal = 1 << 2;
constexpr uint16_t kBroadcast = 1 << 3;
constexpr uint16_t kAnycast = 1 << 4;
constexpr uint16_t kMulticast = 1 << 5;
constexpr uint16_t kBlackhole = 1 << 6;
constexpr uint16_t kUnreachable = 1 << 7;
constexpr uint16_t kProhibit = 1 << 8;
constexpr uint16_t kThrow = 1 << 9;
constexpr uint16_t kNat = 1 << 10;
constexpr uint16_t kXresolve = 1 << 11;
}  // namespace addr_type

struct AddrtypeMatch {
  uint16_t src = 0, dst = 0;  // 0: not tested
  bool inv_src = false, inv_dst = false;
  bool limit_iface_in = false, limit_iface_out = false;
};

struct CommentMatch {
  std::string text;
};

struct StringMatch {
  std::string pattern;  // raw bytes
  std::string algo;     // "bm" or "kmp"
  uint16_t from = 0;
  uint16_t to = 65535;
  bool icase = false;
  bool inv = false;
};

struct LimitMatch {
  uint32_t avg = 0;  // period in 1/10000 s units per packet (XT_LIMIT_SCALE)
  uint32_t burst = 5;
};

struct LengthMatch {
  uint16_t lo = 0, hi = 65535;
  bool inv = false;
};

struct IprangeMatch {
  std::optional<std::pair<uint32_t, uint32_t>> src, dst;
  bool inv_src = false, inv_dst = false;
};

struct NfacctMatch {
  std::string name;
};

using Match = std::variant<TcpMatch, IcmpMatch, MultiportMatch, ConntrackMatch, MarkMatch,
                           StatisticMatch, RecentMatch, AddrtypeMatch, CommentMatch, StringMatch,
                           LimitMatch, LengthMatch, IprangeMatch, NfacctMatch>;

// ---- targets (-j / -g) ----------------------------------------------------

struct NoTarget {};  // counts only, continues with the next rule

enum class Verdict : uint8_t { kAccept, kDrop, kReturn };
struct VerdictTarget {
  Verdict verdict = Verdict::kAccept;
};

struct JumpTarget {
  std::string chain;
  bool is_goto = false;
};

enum class RejectWith : uint8_t {
  kNetUnreachable,
  kHostUnreachable,
  kPortUnreachable,
  kProtoUnreachable,
  kNetProhibited,
  kHostProhibited,
  kTcpReset,
  kAdminProhibited,
};
struct RejectTarget {
  RejectWith with = RejectWith::kPortUnreachable;
};

// DNAT / SNAT / MASQUERADE / REDIRECT share netfilter's nf_nat_range2.
struct NatTarget {
  enum class Kind : uint8_t { kDnat, kSnat, kMasquerade, kRedirect } kind = Kind::kDnat;
  bool has_addr = false;
  uint32_t min_addr = 0, max_addr = 0;
  bool has_port = false;
  uint16_t min_port = 0, max_port = 0;
  uint16_t base_port = 0;  // DNAT "/N" port shift base, 0 when absent
  bool random = false, random_fully = false, persistent = false;
};

struct MarkTarget {
  // new = (old & ~mask) ^ value, as xt_MARK v2.
  uint32_t value = 0;
  uint32_t mask = 0;
};

struct ConnmarkTarget {
  enum class Mode : uint8_t { kSet, kSave, kRestore } mode = Mode::kSet;
  uint32_t ctmark = 0, ctmask = 0xffffffff;  // kSet: ct = (ct & ~ctmask) ^ ctmark
  uint32_t nfmask = 0xffffffff;              // kSave / kRestore masks
};

struct LogTarget {
  uint8_t level = 4;
  std::string prefix;
  bool has_prefix = false;
  uint8_t flags = 0;  // 1 tcp-seq, 2 tcp-opt, 4 ip-opt, 8 uid, 0x20 macdecode
};

struct NotrackTarget {
  bool ct_form = false;  // written as -j CT --notrack
};

using Target = std::variant<NoTarget, VerdictTarget, JumpTarget, RejectTarget, NatTarget,
                            MarkTarget, ConnmarkTarget, LogTarget, NotrackTarget>;

struct Rule {
  SourcePos pos;
  Ipv4Net src, dst;
  bool inv_src = false, inv_dst = false;
  Iface in, out;
  bool inv_in = false, inv_out = false;
  uint8_t proto = 0;  // 0: any
  bool inv_proto = false;
  bool fragment = false;  // -f: non-first fragments
  bool inv_fragment = false;
  std::vector<Match> matches;
  Target target;
  std::optional<Counters> counters;
};

enum class Policy : uint8_t { kNone, kAccept, kDrop };  // kNone: user chain

struct Chain {
  std::string name;
  std::optional<Hook> builtin;
  Policy policy = Policy::kNone;
  Counters counters;
  std::vector<Rule> rules;
  SourcePos pos;
};

struct Table {
  bool present = false;  // declared by a *table block
  std::vector<Chain> chains;  // built-in chains first (hook order), then user chains

  Chain* find(std::string_view name);  // linear: for a few lookups
  const Chain* find(std::string_view name) const;
};

// A table's chain names to their indices in `chains`, for the passes that
// resolve every jump of a table (kube-proxy files hold tens of thousands of
// chains; Table::find is linear). Built by the control thread; it refers to
// the table, which must outlive it and not change under it.
class ChainIndex {
 public:
  explicit ChainIndex(const Table& table);
  // The index of the chain named `name`, or size() when there is none.
  uint32_t find(std::string_view name) const;
  uint32_t size() const { return n_; }

 private:
  const Table* table_;
  uint32_t n_;
  uint32_t mask_;
  std::vector<std::pair<size_t, uint32_t>> slots_;  // open addressing: (hash, index + 1), 0 free
};

// Packet fields that cost the data plane work to fill and that only some
// matches (or, for the connmark, targets) read; Ruleset::fields_read() says
// which its rules need, and the rest are left unset.
namespace packet_field {
constexpr uint32_t kAddrType = 1u << 0;    // src_type, dst_type: -m addrtype
constexpr uint32_t kCtTuples = 1u << 1;    // ct_orig, ct_reply: --ctproto, --ctorig*, --ctrepl*
constexpr uint32_t kTcpOptions = 1u << 2;  // tcp_options: --tcp-option
constexpr uint32_t kCtExpire = 1u << 3;    // ct_expire: --ctexpire
constexpr uint32_t kCtMark = 1u << 4;      // ct_mark, read or set: -m connmark, -j CONNMARK
}  // namespace packet_field

struct Ruleset {
  std::array<Table, kTableCount> tables;

  Table& table(TableId t) { return tables[size_t(t)]; }
  const Table& table(TableId t) const { return tables[size_t(t)]; }
  size_t rule_count() const;
  uint32_t fields_read() const;  // packet_field:: bits some rule's match (or target) reads
  size_t chain_count() const;
  size_t table_count() const;
  bool has_rule_counters() const;
};

// A fresh table with its built-in chains, policy ACCEPT.
Table make_table(TableId t);

}  // namespace dpgate::rules
