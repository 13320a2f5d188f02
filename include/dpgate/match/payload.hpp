// Payload matching for `-m string`: every pattern of a Ruleset compiled into
// one Hyperscan block-mode database, scanned at most once per packet and hook.
// The control thread builds a PayloadDatabase (immutable afterwards) and one
// PayloadScanner per worker; a worker uses only its own scanner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dpgate/rules/ruleset.hpp"

struct hs_database;
struct hs_scratch;

namespace dpgate::match {

// The kernel's toupper (lib/ctype.c: Latin-1, so 0xE0 -> 0xC0 and also
// 0xDF -> 0xBF, 0xFF -> 0xDF): what xt_string's --icase compares on both
// sides. Any thread.
uint8_t kernel_toupper(uint8_t c);

// xt_string on a linear skb (skb_find_text, kernel >= 6.7): whether the
// pattern lies entirely within bytes [from, min(to, len)) of the datagram
// (offsets from its IP header), comparing kernel_toupper of both sides under
// --icase. --algo does not change the result. The reference the database is
// tested against; also the fallback for a match state that cannot scan.
// Any thread; no allocation.
bool find_text(const rules::StringMatch& m, const uint8_t* data, size_t len);

// A string match that uses a pattern: its rule (its id, rule_ids())
// and the match's position in the rule.
struct PatternUser {
  uint32_t rule_id = 0;
  uint32_t match_index = 0;
  bool operator==(const PatternUser&) const = default;
};

class PayloadDatabase {
 public:
  static constexpr uint32_t kNoPattern = 0xffffffffu;

  // Every distinct (bytes, --from, --to, --icase) of the ruleset's string
  // matches gets one pattern id; a Hyperscan failure is an Error at the
  // position of the first rule using the pattern. Control thread.
  static rules::Expected<PayloadDatabase> build(const rules::Ruleset& ruleset);

  PayloadDatabase() = default;
  PayloadDatabase(PayloadDatabase&& other) noexcept;
  PayloadDatabase& operator=(PayloadDatabase&& other) noexcept;
  PayloadDatabase(const PayloadDatabase&) = delete;
  PayloadDatabase& operator=(const PayloadDatabase&) = delete;
  ~PayloadDatabase();

  uint32_t pattern_count() const { return static_cast<uint32_t>(patterns_.size()); }
  // 64-bit words of a scan result (a bitset of pattern ids).
  uint32_t words() const { return (pattern_count() + 63) / 64; }
  // Patterns Hyperscan scans for (the others cannot fit between --from and --to).
  uint32_t scanned_count() const { return scanned_; }
  // The bytes [window_begin(), window_end()) of a datagram are all that any
  // pattern can match (least --from, greatest --to); scan() looks at no
  // others.
  uint32_t window_begin() const { return window_begin_; }
  uint32_t window_end() const { return window_end_; }
  const std::vector<PatternUser>& users(uint32_t id) const { return patterns_[id].users; }
  // Of the numbering of pattern ids (rules::StringPatterns): equal to the
  // fingerprint of the Program compiled from the same Ruleset.
  uint64_t fingerprint() const { return fingerprint_; }

  // The pattern id of a string match, by content; kNoPattern when the
  // ruleset has no such match. Any thread; no allocation.
  uint32_t find(const rules::StringMatch& m) const;

  // Sets bit `id` of `matched` (words() words, cleared here first) for every
  // pattern found in the datagram. False when Hyperscan failed (the bitset is
  // then unusable). Any thread, each with its own scratch.
  bool scan(const uint8_t* data, size_t len, hs_scratch* scratch, uint64_t* matched) const;

  // A scratch space for scan(); the caller frees it with hs_free_scratch.
  // nullptr when there is nothing to scan for. Control thread.
  hs_scratch* alloc_scratch() const;

 private:
  struct Pattern {
    std::string bytes;
    uint16_t from = 0, to = 0;
    bool icase = false;
    std::vector<PatternUser> users;
    rules::SourcePos pos;  // first rule using it
  };
  static uint64_t key_hash(const std::string& bytes, uint16_t from, uint16_t to, bool icase);
  uint32_t find(const std::string& bytes, uint16_t from, uint16_t to, bool icase) const;

  std::vector<Pattern> patterns_;
  std::vector<uint32_t> index_;  // open addressing over key_hash: pattern ids, kNoPattern = empty
  uint32_t scanned_ = 0;
  uint32_t window_begin_ = 0, window_end_ = 0;
  uint64_t fingerprint_ = 0;
  hs_database* db_ = nullptr;
};

// One worker's scanning state for one database: Hyperscan scratch, the last
// packet's result bitset. A packet is scanned when the first string match
// asks about it; later string matches of the same packet read the bitset.
// Built by the control thread; then used only by the worker that claimed it.
class PayloadScanner {
 public:
  explicit PayloadScanner(const PayloadDatabase& db);
  ~PayloadScanner();
  PayloadScanner(const PayloadScanner&) = delete;
  PayloadScanner& operator=(const PayloadScanner&) = delete;

  // Forgets the last scan: the next question scans again. Once per packet
  // and hook (the bytes may have been rewritten since). Owning worker.
  void begin_packet() { scanned_data_ = nullptr; }

  // Whether the string match holds for the datagram (before '!'). Owning
  // worker; no allocation.
  bool matches(const rules::StringMatch& m, const uint8_t* data, size_t len);

  // The datagram's scan result: bit k set when pattern k occurs; nullptr
  // when Hyperscan failed. Scans unless this datagram was scanned since
  // begin_packet(); the bitset stays valid until the next scan. Owning
  // worker; no allocation.
  const uint64_t* scan(const uint8_t* data, size_t len);

  const PayloadDatabase& database() const { return db_; }

  uint64_t scans() const { return scans_; }

 private:
  const PayloadDatabase& db_;
  hs_scratch* scratch_ = nullptr;
  std::unique_ptr<uint64_t[]> matched_;
  const uint8_t* scanned_data_ = nullptr;
  size_t scanned_len_ = 0;
  bool scan_ok_ = false;
  uint64_t scans_ = 0;
};

}  // namespace dpgate::match
