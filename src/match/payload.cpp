// PayloadDatabase and PayloadScanner (see payload.hpp).
//
// How xt_string's options become Hyperscan expressions:
// - every byte is written \xHH, so --string and --hex-string bytes are all
//   literal (no regex metacharacter can leak through);
// - --icase compares kernel_toupper of both sides: HS_FLAG_CASELESS folds
//   a-z/A-Z, and a Latin-1 byte whose toupper class has two members becomes
//   the class [\xHH\xHH] (Hyperscan folds ASCII only);
// - --from/--to: the match [start, end) must satisfy start >= from and
//   end <= to (skb_find_text since Linux 6.7). Only the window
//   [least --from, greatest --to) of the datagram is scanned: no pattern can
//   lie outside it. Offsets inside the window are relative to its start, so
//   a pattern whose --from is above the least gets Hyperscan's
//   min_offset = from - window start + len, and one whose --to is below the
//   greatest gets max_offset = to - window start. Patterns that share the
//   window's bounds (every pattern, when none uses --from/--to) get no
//   extended parameter. Hyperscan does not narrow the scan itself: with 1,
//   10 and 100 literals it reads the whole buffer whatever max_offset says,
//   and a min_offset does not make it skip the bytes before it
//   (perf/match/README.md, perf/match/hs_probe.cpp);
// - HS_FLAG_SINGLEMATCH: one report per pattern and packet is all we need.
#include "dpgate/match/payload.hpp"

#include <hs/hs.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

#include "dpgate/rules/interpreter.hpp"

namespace dpgate::match {
namespace {

constexpr uint16_t kMaxOffset = 65535;

int on_match(unsigned int id, unsigned long long, unsigned long long, unsigned int, void* ctx) {
  static_cast<uint64_t*>(ctx)[id >> 6] |= uint64_t{1} << (id & 63);
  return 0;
}

// Every byte whose kernel_toupper equals that of c, c first.
std::vector<uint8_t> toupper_class(uint8_t c) {
  std::vector<uint8_t> out{c};
  for (int x = 0; x < 256; ++x) {
    if (x != c && kernel_toupper(uint8_t(x)) == kernel_toupper(c)) out.push_back(uint8_t(x));
  }
  return out;
}

std::string expression(const std::string& bytes, bool icase) {
  std::string out;
  char buf[8];
  for (char ch : bytes) {
    const uint8_t c = uint8_t(ch);
    const std::vector<uint8_t> cls = icase && c >= 0x80 ? toupper_class(c) : std::vector<uint8_t>{c};
    if (cls.size() > 1) out += '[';
    for (uint8_t x : cls) {
      std::snprintf(buf, sizeof buf, "\\x%02x", x);
      out += buf;
    }
    if (cls.size() > 1) out += ']';
  }
  return out;
}

}  // namespace

uint8_t kernel_toupper(uint8_t c) {
  // lib/ctype.c: _L for a-z, 0xDF-0xF6 and 0xF8-0xFF; toupper subtracts 0x20.
  const bool lower = (c >= 'a' && c <= 'z') || (c >= 0xDF && c != 0xF7);
  return lower ? uint8_t(c - 0x20) : c;
}

bool find_text(const rules::StringMatch& m, const uint8_t* data, size_t len) {
  const size_t n = m.pattern.size();
  const size_t end = std::min<size_t>(len, m.to);
  if (data == nullptr || n == 0 || m.from > end || end - m.from < n) return false;
  const auto* pat = reinterpret_cast<const uint8_t*>(m.pattern.data());
  for (size_t s = m.from; s + n <= end; ++s) {
    size_t k = 0;
    if (m.icase) {
      while (k < n && kernel_toupper(data[s + k]) == kernel_toupper(pat[k])) ++k;
    } else {
      while (k < n && data[s + k] == pat[k]) ++k;
    }
    if (k == n) return true;
  }
  return false;
}

PayloadDatabase::PayloadDatabase(PayloadDatabase&& other) noexcept
    : patterns_(std::move(other.patterns_)),
      index_(std::move(other.index_)),
      scanned_(other.scanned_),
      window_begin_(other.window_begin_),
      window_end_(other.window_end_),
      fingerprint_(other.fingerprint_),
      db_(std::exchange(other.db_, nullptr)) {}

PayloadDatabase& PayloadDatabase::operator=(PayloadDatabase&& other) noexcept {
  if (this != &other) {
    hs_free_database(db_);
    patterns_ = std::move(other.patterns_);
    index_ = std::move(other.index_);
    scanned_ = other.scanned_;
    window_begin_ = other.window_begin_;
    window_end_ = other.window_end_;
    fingerprint_ = other.fingerprint_;
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

PayloadDatabase::~PayloadDatabase() { hs_free_database(db_); }

uint64_t PayloadDatabase::key_hash(const std::string& bytes, uint16_t from, uint16_t to, bool icase) {
  // Length, offsets and the first and last 8 bytes: O(1) per lookup; equal
  // hashes are told apart by comparing the bytes.
  uint64_t head = 0, tail = 0;
  const size_t n = std::min<size_t>(bytes.size(), 8);
  std::memcpy(&head, bytes.data(), n);
  std::memcpy(&tail, bytes.data() + bytes.size() - n, n);
  uint64_t h = (uint64_t{from} << 48) ^ (uint64_t{to} << 32) ^ (uint64_t(bytes.size()) << 1) ^ uint64_t{icase};
  h = (h ^ head) * 0x9E3779B97F4A7C15ull;
  h = (h ^ (h >> 29) ^ tail) * 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

uint32_t PayloadDatabase::find(const std::string& bytes, uint16_t from, uint16_t to, bool icase) const {
  if (index_.empty() || bytes.empty()) return kNoPattern;
  const uint32_t mask = uint32_t(index_.size() - 1);
  for (uint32_t slot = uint32_t(key_hash(bytes, from, to, icase)) & mask;; slot = (slot + 1) & mask) {
    const uint32_t id = index_[slot];
    if (id == kNoPattern) return kNoPattern;
    const Pattern& p = patterns_[id];
    if (p.from == from && p.to == to && p.icase == icase && p.bytes == bytes) return id;
  }
}

uint32_t PayloadDatabase::find(const rules::StringMatch& m) const { return find(m.pattern, m.from, m.to, m.icase); }

rules::Expected<PayloadDatabase> PayloadDatabase::build(const rules::Ruleset& rs) {
  PayloadDatabase db;
  std::map<std::tuple<std::string, uint16_t, uint16_t, bool>, uint32_t> ids;
  const rules::RuleIds rule_ids = rules::rule_ids(rs);
  // Patterns are numbered in order of first use as the Program compiles
  // rules: tables in order, chains in chain_layout() order (rule id order).
  for (size_t t = 0; t < rs.tables.size(); ++t) {
    if (!rs.tables[t].present) continue;
    const auto& chains = rs.tables[t].chains;
    for (const uint32_t c : rule_ids.layout[t]) {
      for (size_t k = 0; k < chains[c].rules.size(); ++k) {
        const rules::Rule& rule = chains[c].rules[k];
        for (uint32_t mi = 0; mi < rule.matches.size(); ++mi) {
          const auto* s = std::get_if<rules::StringMatch>(&rule.matches[mi]);
          if (s == nullptr) continue;
          if (s->pattern.empty()) return rules::Error{rule.pos, "string: expected a pattern of at least one byte"};
          auto [it, fresh] = ids.try_emplace({s->pattern, s->from, s->to, s->icase}, db.pattern_count());
          if (fresh) db.patterns_.push_back({s->pattern, s->from, s->to, s->icase, {}, rule.pos});
          db.patterns_[it->second].users.push_back({rule_ids.base[t][c] + uint32_t(k), mi});
        }
      }
    }
  }
  if (db.patterns_.empty()) return db;
  for (const Pattern& p : db.patterns_) {
    db.fingerprint_ = rules::fold_string_pattern(db.fingerprint_, p.bytes, p.from, p.to, p.icase);
  }

  uint32_t slots = 4;
  while (slots < db.patterns_.size() * 2) slots <<= 1;
  db.index_.assign(slots, kNoPattern);
  for (uint32_t id = 0; id < db.pattern_count(); ++id) {
    const Pattern& p = db.patterns_[id];
    uint32_t slot = uint32_t(key_hash(p.bytes, p.from, p.to, p.icase)) & (slots - 1);
    while (db.index_[slot] != kNoPattern) slot = (slot + 1) & (slots - 1);
    db.index_[slot] = id;
  }

  // The scan window: from the least --from to the greatest --to of the
  // patterns that can fit between their own bounds.
  auto fits = [](const Pattern& p) { return size_t{p.from} + p.bytes.size() <= p.to; };
  db.window_begin_ = kMaxOffset;
  db.window_end_ = 0;
  for (const Pattern& p : db.patterns_) {
    if (!fits(p)) continue;  // never matches
    db.window_begin_ = std::min<uint32_t>(db.window_begin_, p.from);
    db.window_end_ = std::max<uint32_t>(db.window_end_, p.to);
  }
  std::vector<std::string> exprs;
  std::vector<unsigned> flags, hs_ids;
  std::vector<hs_expr_ext_t> exts;
  for (uint32_t id = 0; id < db.pattern_count(); ++id) {
    const Pattern& p = db.patterns_[id];
    if (!fits(p)) continue;
    exprs.push_back(expression(p.bytes, p.icase));
    flags.push_back(HS_FLAG_SINGLEMATCH | (p.icase ? HS_FLAG_CASELESS : 0u));
    hs_ids.push_back(id);
    hs_expr_ext_t ext{};
    if (p.from > db.window_begin_) {
      ext.flags |= HS_EXT_FLAG_MIN_OFFSET;
      ext.min_offset = p.from - db.window_begin_ + p.bytes.size();
    }
    if (p.to < db.window_end_) {
      ext.flags |= HS_EXT_FLAG_MAX_OFFSET;
      ext.max_offset = p.to - db.window_begin_;
    }
    exts.push_back(ext);
  }
  db.scanned_ = uint32_t(exprs.size());
  if (exprs.empty()) {
    db.window_begin_ = db.window_end_ = 0;
    return db;
  }

  std::vector<const char*> expr_ptrs;
  std::vector<const hs_expr_ext_t*> ext_ptrs;
  for (size_t i = 0; i < exprs.size(); ++i) {
    expr_ptrs.push_back(exprs[i].c_str());
    ext_ptrs.push_back(&exts[i]);
  }
  hs_compile_error_t* err = nullptr;
  if (hs_compile_ext_multi(expr_ptrs.data(), flags.data(), hs_ids.data(), ext_ptrs.data(), unsigned(exprs.size()),
                           HS_MODE_BLOCK, nullptr, &db.db_, &err) != HS_SUCCESS) {
    const int at = err != nullptr ? err->expression : -1;
    const std::string why = err != nullptr && err->message != nullptr ? err->message : "unknown error";
    hs_free_compile_error(err);
    const rules::SourcePos pos = at >= 0 ? db.patterns_[hs_ids[size_t(at)]].pos
                                         : db.patterns_[hs_ids.front()].pos;
    return rules::Error{pos, "string: the payload pattern database could not be built: " + why};
  }
  return db;
}

bool PayloadDatabase::scan(const uint8_t* data, size_t len, hs_scratch* scratch, uint64_t* matched) const {
  std::memset(matched, 0, size_t{words()} * sizeof(uint64_t));
  const size_t end = std::min<size_t>(len, window_end_);
  if (db_ == nullptr || data == nullptr || end <= window_begin_) return true;  // nothing fits
  return hs_scan(db_, reinterpret_cast<const char*>(data + window_begin_), unsigned(end - window_begin_), 0,
                 scratch, on_match, matched) == HS_SUCCESS;
}

hs_scratch* PayloadDatabase::alloc_scratch() const {
  if (db_ == nullptr) return nullptr;
  hs_scratch_t* scratch = nullptr;
  if (hs_alloc_scratch(db_, &scratch) != HS_SUCCESS) return nullptr;
  return scratch;
}

PayloadScanner::PayloadScanner(const PayloadDatabase& db)
    : db_(db), scratch_(db.alloc_scratch()), matched_(new uint64_t[std::max<uint32_t>(db.words(), 1)]()) {}

PayloadScanner::~PayloadScanner() { hs_free_scratch(scratch_); }

bool PayloadScanner::matches(const rules::StringMatch& m, const uint8_t* data, size_t len) {
  const uint32_t id = db_.find(m);
  if (id == PayloadDatabase::kNoPattern) [[unlikely]] {
    return find_text(m, data, len);  // a match from another ruleset
  }
  const uint64_t* found = scan(data, len);
  if (found == nullptr) [[unlikely]] {
    return find_text(m, data, len);
  }
  return (found[id >> 6] >> (id & 63)) & 1;
}

const uint64_t* PayloadScanner::scan(const uint8_t* data, size_t len) {
  if (scanned_data_ != data || scanned_len_ != len || data == nullptr) {
    scan_ok_ = (scratch_ != nullptr || db_.scanned_count() == 0) && db_.scan(data, len, scratch_, matched_.get());
    scanned_data_ = data;
    scanned_len_ = len;
    ++scans_;
  }
  return scan_ok_ ? matched_.get() : nullptr;
}

}  // namespace dpgate::match
