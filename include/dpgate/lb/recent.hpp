// xt_recent lists shared by every worker: a client's connections land on
// different workers and `--rcheck` affinity must hold across them. One
// open-addressing table for all lists, keyed by (list, address), lists
// numbered as rules::recent_list_id numbers their --name. Written and read
// by all workers lock-free: slots are claimed by CAS, time stamps are plain
// atomic stores into a small ring. Sized once, never allocates; when full,
// a new address replaces the least recently hit one near its slot.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace dpgate::lb {

class RecentTable {
 public:
  static constexpr unsigned kStamps = 20;  // hits remembered per address, as ip_pkt_list_tot

  // `capacity` addresses over all lists (rounded up to a power of two).
  // Control thread, before workers start.
  explicit RecentTable(uint32_t capacity);

  // --set: records a hit now. A new address that finds no free slot in its
  // probe window takes the slot of the window's least recently hit address
  // (counted in evictions()), as xt_recent forgets a full list's oldest
  // entry. False only when racing writers took every candidate.
  bool set(uint32_t list, uint32_t addr, uint64_t now_ns, uint8_t ttl);
  // --rcheck / --update: whether the address has `hitcount` hits (at least
  // one when 0) within `seconds` (any age when 0); --update also records a
  // hit when it matches. With `reap`, an address whose hits are all older
  // than `seconds` is forgotten, as xt_recent's --reap.
  bool check(uint32_t list, uint32_t addr, uint64_t now_ns, uint32_t seconds, uint32_t hitcount, bool reap,
             bool update, bool check_ttl, uint8_t ttl);
  // --remove: forgets the address; true if it was present.
  bool remove(uint32_t list, uint32_t addr);

  uint64_t evictions() const { return evicted_.load(std::memory_order_relaxed); }
  uint32_t size() const;  // live addresses (a racy snapshot; for reports)

 private:
  static constexpr uint64_t kEmpty = 0;
  static constexpr uint64_t kTombstone = 1;
  struct alignas(64) Slot {
    std::atomic<uint64_t> key{kEmpty};  // list << 32 | addr, with bit 63 set so no key is 0 or 1
    std::atomic<uint32_t> next{0};
    std::atomic<uint8_t> ttl{0};
    std::atomic<uint64_t> stamps[kStamps] = {};
  };
  static uint64_t make_key(uint32_t list, uint32_t addr) {
    return (uint64_t{1} << 63) | (uint64_t{list & 0x7fffffff} << 32) | addr;
  }
  Slot* find(uint64_t key);
  void stamp(Slot& s, uint64_t now_ns, uint8_t ttl);
  static uint64_t latest_hit(const Slot& s);
  bool replace_least_recent(uint64_t key, uint64_t now_ns, uint8_t ttl);

  std::vector<Slot> slots_;
  uint32_t mask_;
  std::atomic<uint64_t> evicted_{0};
};

}  // namespace dpgate::lb
