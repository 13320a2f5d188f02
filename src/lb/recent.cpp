#include "dpgate/lb/recent.hpp"

#include <bit>

namespace dpgate::lb {

namespace {

constexpr uint32_t kMaxProbe = 64;

uint32_t slot_hash(uint64_t key) { return static_cast<uint32_t>((key * 0x9e3779b97f4a7c15ull) >> 32); }

}  // namespace

RecentTable::RecentTable(uint32_t capacity)
    : slots_(std::bit_ceil(std::max<uint32_t>(capacity, 64))), mask_(static_cast<uint32_t>(slots_.size() - 1)) {}

RecentTable::Slot* RecentTable::find(uint64_t key) {
  uint32_t i = slot_hash(key) & mask_;
  for (uint32_t probe = 0; probe < kMaxProbe; ++probe, i = (i + 1) & mask_) {
    const uint64_t k = slots_[i].key.load(std::memory_order_acquire);
    if (k == key) return &slots_[i];
    if (k == kEmpty) return nullptr;
  }
  return nullptr;
}

void RecentTable::stamp(Slot& s, uint64_t now_ns, uint8_t ttl) {
  const uint32_t at = s.next.fetch_add(1, std::memory_order_relaxed) % kStamps;
  s.stamps[at].store(now_ns | 1, std::memory_order_relaxed);  // never 0: 0 means "no hit"
  s.ttl.store(ttl, std::memory_order_relaxed);
}

bool RecentTable::set(uint32_t list, uint32_t addr, uint64_t now_ns, uint8_t ttl) {
  const uint64_t key = make_key(list, addr);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (Slot* s = find(key)) {
      stamp(*s, now_ns, ttl);
      return true;
    }
    // Claim the first free slot of the probe chain; a racing insert of the
    // same key claims the same slot, and the loser of the CAS sees the key.
    uint32_t i = slot_hash(key) & mask_;
    for (uint32_t probe = 0; probe < kMaxProbe; ++probe, i = (i + 1) & mask_) {
      uint64_t k = slots_[i].key.load(std::memory_order_acquire);
      if (k == key) {
        stamp(slots_[i], now_ns, ttl);
        return true;
      }
      if (k != kEmpty && k != kTombstone) continue;
      if (slots_[i].key.compare_exchange_strong(k, key, std::memory_order_acq_rel)) {
        stamp(slots_[i], now_ns, ttl);
        return true;
      }
      if (k == key) {
        stamp(slots_[i], now_ns, ttl);
        return true;
      }
    }
  }
  return replace_least_recent(key, now_ns, ttl);
}

uint64_t RecentTable::latest_hit(const Slot& s) {
  const uint32_t next = s.next.load(std::memory_order_relaxed);
  return s.stamps[(next + kStamps - 1) % kStamps].load(std::memory_order_relaxed);
}

// The probe window is full of other addresses: the one hit least recently
// goes (xt_recent drops a full list's oldest entry; here the window's, over
// all lists). Its slot becomes a tombstone while its stamps are cleared, so
// no reader sees the old address's hits under the new key; a writer that
// stamps the old address in that instant can leave one stale hit behind (a
// least recently used address is rarely hit just then).
bool RecentTable::replace_least_recent(uint64_t key, uint64_t now_ns, uint8_t ttl) {
  uint32_t i = slot_hash(key) & mask_;
  Slot* victim = &slots_[i];  // every slot's latest hit is below ~0: the loop picks one
  uint64_t victim_key = kEmpty, oldest = ~uint64_t(0);
  for (uint32_t probe = 0; probe < kMaxProbe; ++probe, i = (i + 1) & mask_) {
    const uint64_t k = slots_[i].key.load(std::memory_order_acquire);
    if (k == key) {
      stamp(slots_[i], now_ns, ttl);
      return true;
    }
    const uint64_t latest = (k == kEmpty || k == kTombstone) ? 0 : latest_hit(slots_[i]);
    if (latest < oldest) {
      oldest = latest;
      victim = &slots_[i];
      victim_key = k;
    }
  }
  uint64_t expected = victim_key;
  if (victim_key != kEmpty && victim_key != kTombstone) {
    if (!victim->key.compare_exchange_strong(expected, kTombstone, std::memory_order_acq_rel)) return false;
    for (auto& st : victim->stamps) st.store(0, std::memory_order_relaxed);
    evicted_.fetch_add(1, std::memory_order_relaxed);
    expected = kTombstone;
  }
  if (!victim->key.compare_exchange_strong(expected, key, std::memory_order_acq_rel) && expected != key) {
    return false;  // another address took the freed slot first
  }
  stamp(*victim, now_ns, ttl);
  return true;
}

bool RecentTable::check(uint32_t list, uint32_t addr, uint64_t now_ns, uint32_t seconds, uint32_t hitcount, bool reap,
                        bool update, bool check_ttl, uint8_t ttl) {
  Slot* s = find(make_key(list, addr));
  if (s == nullptr) return false;
  if (check_ttl && s->ttl.load(std::memory_order_relaxed) != ttl) return false;
  const uint64_t window = uint64_t{seconds} * 1000000000ull;
  const uint64_t since = (seconds != 0 && now_ns > window) ? now_ns - window : 0;
  uint32_t hits = 0, fresh = 0;
  for (const auto& st : s->stamps) {
    const uint64_t t = st.load(std::memory_order_relaxed);
    if (t == 0) continue;
    ++hits;
    if (seconds == 0 || t >= since) ++fresh;
  }
  if (hits == 0) return false;
  if (reap && seconds != 0 && fresh == 0) {
    remove(list, addr);
    return false;
  }
  const bool matched = fresh >= std::max<uint32_t>(hitcount, 1);
  if (matched && update) stamp(*s, now_ns, ttl);
  return matched;
}

bool RecentTable::remove(uint32_t list, uint32_t addr) {
  Slot* s = find(make_key(list, addr));
  if (s == nullptr) return false;
  for (auto& st : s->stamps) st.store(0, std::memory_order_relaxed);
  s->key.store(kTombstone, std::memory_order_release);
  return true;
}

uint32_t RecentTable::size() const {
  uint32_t n = 0;
  for (const auto& s : slots_) {
    const uint64_t k = s.key.load(std::memory_order_relaxed);
    n += (k != kEmpty && k != kTombstone) ? 1 : 0;
  }
  return n;
}

}  // namespace dpgate::lb
