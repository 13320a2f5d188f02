// What rule evaluation reads (a packet's metadata plus its conntrack view)
// and writes (verdict, NAT binding, marks, matched rules, LOG rules passed), and the state
// interface stateful matches go through. Shared by the interpreter, the
// compiled Program and the data plane, which fills Packet per packet.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dpgate/rules/ruleset.hpp"

namespace dpgate::rules {

// Host byte order addresses and ports.
struct Tuple {
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  bool operator==(const Tuple&) const = default;
};

constexpr size_t kIfNameSize = 16;  // IFNAMSIZ

struct Packet {
  uint32_t src = 0, dst = 0;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;  // tcp/udp/sctp/dccp/udplite
  uint8_t icmp_type = 0, icmp_code = 0;
  uint8_t tcp_flags = 0;
  std::array<uint64_t, 4> tcp_options{};  // bit k: option kind k present
  uint16_t length = 0;                    // IP total length
  uint8_t ttl = 64;
  bool fragment = false;  // a non-first fragment (what -f tests)
  char in_iface[kIfNameSize] = {};   // "" when there is none (OUTPUT)
  char out_iface[kIfNameSize] = {};  // "" when there is none (PREROUTING, INPUT)
  uint32_t mark = 0;
  // Address types (addr_type bits) as the data plane classifies them:
  // LOCAL for dpgate's own and configured addresses, else UNICAST etc.
  uint16_t src_type = addr_type::kUnicast;
  uint16_t dst_type = addr_type::kUnicast;
  // Conntrack view.
  uint16_t ct_state = ct_state::kNew;
  uint16_t ct_status = 0;
  CtDir ct_dir = CtDir::kOriginal;
  uint32_t ct_mark = 0;
  uint32_t ct_expire = 0;  // seconds left
  // A later packet of an existing connection (its NAT binding was chosen by
  // the first one): the nat table is skipped, as in the kernel, whatever the
  // state says (an unanswered flow's packets are all NEW).
  bool ct_confirmed = false;
  Tuple ct_orig, ct_reply;
  // Payload for -m string (transport payload as xt_string sees the skb).
  const uint8_t* payload = nullptr;
  uint16_t payload_len = 0;

  void set_in_iface(const char* name) { std::strncpy(in_iface, name, kIfNameSize - 1); }
  void set_out_iface(const char* name) { std::strncpy(out_iface, name, kIfNameSize - 1); }
};

enum class Action : uint8_t { kAccept, kDrop, kReject };

constexpr size_t kMaxMatched = 32;
constexpr size_t kMaxLogs = 4;

// A LOG rule the packet passed. LOG does not end the traversal (xt_LOG
// returns XT_CONTINUE); the caller writes the record. `target` points into
// the evaluator's Ruleset or Program and lives as long as it does.
struct LogHit {
  uint32_t rule = 0;  // rule id (see rule_ids())
  uint32_t mark = 0;  // the packet mark when the rule ran (LOG prints MARK=)
  const LogTarget* target = nullptr;
};

// The outcome of one hook (all its tables) for one packet.
struct HookResult {
  Action action = Action::kAccept;
  RejectWith reject = RejectWith::kPortUnreachable;
  bool has_dnat = false;  // DNAT or REDIRECT chosen (first packet only)
  bool has_snat = false;  // SNAT or MASQUERADE chosen
  NatTarget dnat, snat;
  uint32_t mark = 0;
  uint32_t ct_mark = 0;
  bool notrack = false;
  // Rule ids (see rule_ids()) whose matches all held, in
  // the order they matched; for counters and trace.
  // Only the first matched_count / log_count entries are set: a result is
  // made per packet and hook, and zeroing the arrays each time showed in the
  // data plane's profile. A rule that matches once the list is full sets
  // matched_overflow, and the evaluator hands it to
  // MatchState::unrecorded_match() instead, so that it is still counted.
  uint16_t matched_count = 0;
  bool matched_overflow = false;
  std::array<uint32_t, kMaxMatched> matched;
  // LOG rules passed, in order; more than kMaxLogs sets logs_overflow.
  uint8_t log_count = 0;
  bool logs_overflow = false;
  std::array<LogHit, kMaxLogs> logs;

  // A fresh result for a packet carrying these marks; the arrays are left
  // as they are (only their first *_count entries mean anything).
  void reset(uint32_t packet_mark, uint32_t packet_ct_mark) {
    action = Action::kAccept;
    reject = RejectWith::kPortUnreachable;
    has_dnat = has_snat = notrack = false;
    mark = packet_mark;
    ct_mark = packet_ct_mark;
    matched_count = 0;
    matched_overflow = false;
    log_count = 0;
    logs_overflow = false;
  }
  // False when the list was full: record_match() then passes `id` on to
  // MatchState::unrecorded_match().
  [[nodiscard]] bool add_matched(uint32_t id) {
    if (matched_count < kMaxMatched) [[likely]] {
      matched[matched_count++] = id;
      return true;
    }
    matched_overflow = true;
    return false;
  }
  void add_log(uint32_t id, uint32_t mark, const LogTarget& t) {
    if (log_count < kMaxLogs) {
      logs[log_count++] = {id, mark, &t};
    } else {
      logs_overflow = true;
    }
  }
  bool operator==(const HookResult& o) const;
};

// Every distinct payload pattern (bytes, --from, --to, --icase) of a
// ruleset's string matches, numbered in order of first use: tables in
// order, chains in chain_layout() order (rule id order), rules and matches
// in order. The compiled Program and match::PayloadDatabase number them
// alike; equal fingerprints (each pattern folded in id order by
// fold_string_pattern, from 0) say that two numberings are the same, so a
// scan's bitset can be read by pattern id.
struct StringPatterns {
  std::vector<StringMatch> patterns;  // by id; '!' and --algo are not part of a pattern
  uint64_t fingerprint = 0;
};

// One more pattern into a numbering's fingerprint. Any thread.
uint64_t fold_string_pattern(uint64_t fingerprint, const std::string& bytes, uint16_t from, uint16_t to,
                             bool icase);

// What a -m recent match asks of the state, in a compact form the Program
// keeps inline with the rule's other matches: `list` numbers the list by its
// --name (recent_list_id), no string to fetch and hash per packet.
struct RecentCheck {
  uint32_t list = 0;
  uint32_t seconds = 0;
  uint32_t hitcount = 0;
  uint32_t mask = 0xffffffff;
  RecentMatch::Command command = RecentMatch::Command::kSet;
  bool reap = false;
  bool rttl = false;
  bool rsource = true;
};
// A list's number: FNV-1a of its name in 31 bits (what the recent tables
// key on; two names that share a number share a list). Any thread.
uint32_t recent_list_id(std::string_view name);
RecentCheck recent_check(const RecentMatch& m);

// Stateful matches ask this; the data plane implements it per worker
// (recent tables, token buckets, Hyperscan), tests use SimpleMatchState.
// Called only when evaluation reaches such a match, never per rule.
class MatchState {
 public:
  virtual ~MatchState() = default;
  // statistic --mode random: a uniform value in [0, 2^31).
  virtual uint32_t random31() = 0;
  // statistic --mode nth: advances the rule's counter, true on the chosen packet.
  virtual bool nth(uint32_t rule_id, uint32_t match_index, const StatisticMatch& m) = 0;
  // recent: performs --set/--update/--remove and answers the check (before '!').
  virtual bool recent(const RecentCheck& m, const Packet& p) = 0;
  // limit: true while the rule's token bucket allows the packet.
  virtual bool limit(uint32_t rule_id, uint32_t match_index, const LimitMatch& m) = 0;
  // nfacct: counts the packet on the named object; always matches.
  virtual void nfacct(const NfacctMatch& m, const Packet& p) = 0;
  // Rule `rule_id` matched `p` after its HookResult had listed kMaxMatched
  // rules: the kernel counts every rule a packet matches, so whoever keeps
  // the counters counts this one now. The default keeps nothing (the
  // result's matched_overflow still says a rule went unlisted).
  virtual void unrecorded_match(uint32_t /*rule_id*/, const Packet& /*p*/) {}
  // string: whether the payload contains the pattern (before '!').
  virtual bool string(const StringMatch& m, const Packet& p) = 0;
  // string for every pattern of a numbering at once: a bitset (bit k: pattern
  // k occurs in the payload, before '!') that stays valid while the same hook
  // of the same packet is evaluated; nullptr when this state cannot answer
  // for that numbering, and string() is then asked per match. The Program
  // asks at most once per hook, and only when it reaches a string match.
  virtual const uint64_t* string_scan(const StringPatterns&, const Packet&) { return nullptr; }
};

// Rule `id` matched `p`: listed in `res`, or, with the list full, handed to
// `state` to be counted at once. Both evaluators call this for every match.
inline void record_match(HookResult& res, MatchState& state, uint32_t id, const Packet& p) {
  if (!res.add_matched(id)) [[unlikely]] state.unrecorded_match(id, p);
}

// Deterministic reference state: seeded xorshift random source, per-rule
// nth counters, recent lists with a settable clock, token buckets, named
// counters, plain substring search. Control thread / tests only.
class SimpleMatchState final : public MatchState {
 public:
  explicit SimpleMatchState(uint64_t seed = 1) : rng_(seed ? seed : 1) {}
  void set_now(double seconds) { now_ = seconds; }
  double now() const { return now_; }
  uint64_t nfacct_packets(const std::string& name) const;

  uint32_t random31() override;
  bool nth(uint32_t rule_id, uint32_t match_index, const StatisticMatch& m) override;
  bool recent(const RecentCheck& m, const Packet& p) override;
  bool limit(uint32_t rule_id, uint32_t match_index, const LimitMatch& m) override;
  void nfacct(const NfacctMatch& m, const Packet& p) override;
  bool string(const StringMatch& m, const Packet& p) override;
  // string() for each pattern, so that it agrees with the rule-by-rule path.
  const uint64_t* string_scan(const StringPatterns& patterns, const Packet& p) override;
  // Kept in order, for a test to read.
  void unrecorded_match(uint32_t rule_id, const Packet&) override { unrecorded_.push_back(rule_id); }
  const std::vector<uint32_t>& unrecorded() const { return unrecorded_; }

 private:
  struct Bucket {
    double credit = 0;
    double last = 0;
    bool init = false;
  };
  uint64_t rng_;
  double now_ = 0;
  std::map<uint64_t, uint32_t> nth_;
  std::map<uint64_t, Bucket> buckets_;
  std::vector<uint32_t> unrecorded_;
  // list -> address -> hit times (oldest first) and last ttl
  struct Entry {
    std::vector<double> hits;
    uint8_t ttl = 0;
  };
  std::map<uint32_t, std::map<uint32_t, Entry>> recent_;
  std::map<std::string, uint64_t> nfacct_;
  std::vector<uint64_t> found_;  // string_scan's answer
};

}  // namespace dpgate::rules
