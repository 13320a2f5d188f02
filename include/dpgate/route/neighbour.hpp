// The neighbour (ARP) table: (port, IPv4) -> MAC.
// Written only by the control thread (learning from workers' messages, static
// entries, ageing); read by workers without locks: each slot is a seqlock, so
// a reader that races a write retries and never sees a torn entry.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "dpgate/net/addr.hpp"

namespace dpgate::route {

enum class NeighbourState : uint8_t {
  kEmpty = 0,
  kReachable,  // confirmed recently
  kStale,      // not confirmed for `reachable_time`: still used, workers re-ARP it
  kStatic,     // from the config; never ages
  kDeleted,    // tombstone: keeps probe chains intact for readers
};

struct Neighbour {
  NeighbourState state = NeighbourState::kEmpty;
  net::MacAddr mac;
};

// What a worker tells the control thread when it sees an ARP packet worth
// learning from. Sent over an MP/SC ring (rte_ring elem API, 16 bytes).
struct NeighbourLearn {
  uint32_t ip = 0;  // host order
  uint16_t port = 0;
  net::MacAddr mac;
  uint32_t pad = 0;
};
static_assert(sizeof(NeighbourLearn) == 16);

class NeighbourTable {
 public:
  // `capacity` is rounded up to a power of two. Control thread.
  explicit NeighbourTable(uint32_t capacity);

  // Lock-free lookup. Workers and control thread.
  std::optional<Neighbour> lookup(uint16_t port, uint32_t ip) const;

  // Control thread only. Returns false when the table is full.
  bool set(uint16_t port, uint32_t ip, net::MacAddr mac, NeighbourState state, uint64_t now);
  // Refreshes a dynamic entry (never overrides a static one). Control thread.
  bool learn(uint16_t port, uint32_t ip, net::MacAddr mac, uint64_t now);
  // Ages dynamic entries: REACHABLE older than reachable_time becomes STALE;
  // STALE older than reachable_time + stale_time is deleted. Control thread.
  void age(uint64_t now, uint64_t reachable_time, uint64_t stale_time);
  bool erase(uint16_t port, uint32_t ip);

  struct Row {
    uint16_t port;
    uint32_t ip;
    Neighbour neighbour;
  };
  std::vector<Row> rows() const;  // Control thread.
  uint32_t size() const { return live_; }

  // Changes after every write to the table (release). A worker keeps the
  // entry it last looked up across bursts and drops it when this differs
  // from the value it saw, once a burst: an entry is then at most one burst
  // stale, as it was when the cache lived for one burst. Any thread.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  // Two words written under a sequence counter (odd while being written).
  // key  = ip << 32 | port << 16 | state
  // mac  = the 48-bit MAC
  struct alignas(32) Slot {
    std::atomic<uint32_t> seq{0};
    std::atomic<uint64_t> key{0};
    std::atomic<uint64_t> mac{0};
  };
  void write(Slot& slot, uint64_t key, uint64_t mac);
  static uint64_t make_key(uint16_t port, uint32_t ip, NeighbourState state) {
    return (uint64_t{ip} << 32) | (uint64_t{port} << 16) | static_cast<uint8_t>(state);
  }
  uint32_t index_of(uint16_t port, uint32_t ip) const;
  // Finds the slot holding (port, ip), or nullptr. Control thread.
  Slot* find(uint16_t port, uint32_t ip);

  std::vector<Slot> slots_;
  std::vector<uint64_t> confirmed_;  // control-only timestamps, parallel to slots_
  uint32_t mask_ = 0;
  uint32_t live_ = 0;
  // On a line of its own: every worker reads it every burst, and only a
  // write to the table writes it.
  alignas(64) std::atomic<uint64_t> generation_{0};
};

}  // namespace dpgate::route
