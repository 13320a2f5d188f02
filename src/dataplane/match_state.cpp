#include "dpgate/dataplane/match_state.hpp"

#include <algorithm>

namespace dpgate::dataplane {

uint32_t WorkerMatchState::random31() {
  // xorshift64*: statistic compares a 31-bit value with lround(p * 2^31).
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<uint32_t>((rng_ * 0x2545F4914F6CDD1Dull) >> 33);
}

bool WorkerMatchState::nth(uint32_t rule_id, uint32_t match_index, const rules::StatisticMatch& m) {
  // As xt_statistic: one counter per rule for all CPUs, advanced by CAS; the
  // packet that wraps it to 0 matches.
  std::atomic<uint32_t>& count = rules_->nth[PublishedRules::state_slot(rule_id, match_index)];
  uint32_t old_value = count.load(std::memory_order_relaxed);
  uint32_t new_value;
  do {
    new_value = old_value == m.every ? 0 : old_value + 1;
  } while (!count.compare_exchange_weak(old_value, new_value, std::memory_order_relaxed));
  return new_value == 0;
}

bool WorkerMatchState::recent(const rules::RecentCheck& m, const rules::Packet& p) {
  const uint32_t addr = (m.rsource ? p.src : p.dst) & m.mask;
  const uint32_t list = m.list;
  using Command = rules::RecentMatch::Command;
  switch (m.command) {
    case Command::kSet:
      recent_->set(list, addr, now_ns_, p.ttl);
      return true;
    case Command::kRemove:
      return recent_->remove(list, addr);
    case Command::kRcheck:
    case Command::kUpdate:
      return recent_->check(list, addr, now_ns_, m.seconds, m.hitcount, m.reap, m.command == Command::kUpdate, m.rttl,
                            p.ttl);
  }
  return false;
}

bool WorkerMatchState::limit(uint32_t rule_id, uint32_t match_index, const rules::LimitMatch& m) {
  // xt_limit's token bucket (one packet costs avg/10000 s, `burst` packets of
  // credit) as a generic cell rate algorithm on one shared atomic.
  const uint64_t cost = uint64_t{m.avg} * 100000;  // 1/10000 s units -> ns
  const uint64_t tolerance = cost * (m.burst == 0 ? 0 : m.burst - 1);
  std::atomic<uint64_t>& tat = rules_->limit_tat[PublishedRules::state_slot(rule_id, match_index)];
  uint64_t old_tat = tat.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t base = std::max(old_tat, now_ns_);
    if (base - now_ns_ > tolerance) return false;
    if (tat.compare_exchange_weak(old_tat, base + cost, std::memory_order_relaxed)) return true;
  }
}

bool WorkerMatchState::string(const rules::StringMatch& m, const rules::Packet& p) {
  // As xt_string: the datagram from its IP header (p.payload, ip total length).
  if (scanner_ != nullptr && packet_scoped_) [[likely]] {
    return scanner_->matches(m, p.payload, p.payload_len);
  }
  return match::find_text(m, p.payload, p.payload_len);
}

const uint64_t* WorkerMatchState::string_scan(const rules::StringPatterns& patterns,
                                              const rules::Packet& p) {
  if (scanner_ == nullptr) return nullptr;
  const match::PayloadDatabase& db = scanner_->database();
  if (db.fingerprint() != patterns.fingerprint || db.pattern_count() != patterns.patterns.size())
      [[unlikely]] {
    return nullptr;
  }
  if (!packet_scoped_) scanner_->begin_packet();
  return scanner_->scan(p.payload, p.payload_len);
}

}  // namespace dpgate::dataplane
