#include "dpgate/route/neighbour.hpp"

#include <bit>

namespace dpgate::route {

namespace {

constexpr uint32_t kMaxProbe = 64;

uint64_t pack_mac(const net::MacAddr& mac) {
  uint64_t v = 0;
  for (uint8_t b : mac.bytes) v = (v << 8) | b;
  return v;
}

net::MacAddr unpack_mac(uint64_t v) {
  net::MacAddr mac;
  for (int i = 5; i >= 0; --i, v >>= 8) mac.bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(v);
  return mac;
}

NeighbourState state_of(uint64_t key) { return static_cast<NeighbourState>(key & 0xff); }
bool same_addr(uint64_t key, uint16_t port, uint32_t ip) {
  return (key >> 16) == ((uint64_t{ip} << 16) | port);
}

}  // namespace

NeighbourTable::NeighbourTable(uint32_t capacity)
    : slots_(std::bit_ceil(std::max<uint32_t>(capacity, 16))),
      confirmed_(slots_.size(), 0),
      mask_(static_cast<uint32_t>(slots_.size() - 1)) {}

uint32_t NeighbourTable::index_of(uint16_t port, uint32_t ip) const {
  uint64_t h = (uint64_t{ip} << 16 | port) * 0x9e3779b97f4a7c15ull;
  return static_cast<uint32_t>(h >> 40) & mask_;
}

std::optional<Neighbour> NeighbourTable::lookup(uint16_t port, uint32_t ip) const {
  uint32_t i = index_of(port, ip);
  for (uint32_t probe = 0; probe < kMaxProbe; ++probe, i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    uint64_t key, mac;
    uint32_t seq;
    do {
      seq = s.seq.load(std::memory_order_acquire);
      key = s.key.load(std::memory_order_relaxed);
      mac = s.mac.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
    } while ((seq & 1) != 0 || seq != s.seq.load(std::memory_order_relaxed));
    const NeighbourState state = state_of(key);
    if (state == NeighbourState::kEmpty) return std::nullopt;
    if (state != NeighbourState::kDeleted && same_addr(key, port, ip)) {
      return Neighbour{state, unpack_mac(mac)};
    }
  }
  return std::nullopt;
}

void NeighbourTable::write(Slot& slot, uint64_t key, uint64_t mac) {
  const uint32_t seq = slot.seq.load(std::memory_order_relaxed);
  slot.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  slot.key.store(key, std::memory_order_relaxed);
  slot.mac.store(mac, std::memory_order_relaxed);
  slot.seq.store(seq + 2, std::memory_order_release);
  generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

NeighbourTable::Slot* NeighbourTable::find(uint16_t port, uint32_t ip) {
  uint32_t i = index_of(port, ip);
  for (uint32_t probe = 0; probe < kMaxProbe; ++probe, i = (i + 1) & mask_) {
    const uint64_t key = slots_[i].key.load(std::memory_order_relaxed);
    const NeighbourState state = state_of(key);
    if (state == NeighbourState::kEmpty) return nullptr;
    if (state != NeighbourState::kDeleted && same_addr(key, port, ip)) return &slots_[i];
  }
  return nullptr;
}

bool NeighbourTable::set(uint16_t port, uint32_t ip, net::MacAddr mac, NeighbourState state,
                         uint64_t now) {
  Slot* slot = find(port, ip);
  if (slot == nullptr) {
    uint32_t i = index_of(port, ip);
    for (uint32_t probe = 0; probe < kMaxProbe; ++probe, i = (i + 1) & mask_) {
      const NeighbourState s = state_of(slots_[i].key.load(std::memory_order_relaxed));
      if (s == NeighbourState::kEmpty || s == NeighbourState::kDeleted) {
        slot = &slots_[i];
        ++live_;
        break;
      }
    }
    if (slot == nullptr) return false;
  }
  write(*slot, make_key(port, ip, state), pack_mac(mac));
  confirmed_[static_cast<size_t>(slot - slots_.data())] = now;
  return true;
}

bool NeighbourTable::learn(uint16_t port, uint32_t ip, net::MacAddr mac, uint64_t now) {
  const Slot* slot = find(port, ip);
  if (slot != nullptr && state_of(slot->key.load(std::memory_order_relaxed)) == NeighbourState::kStatic) {
    return true;
  }
  return set(port, ip, mac, NeighbourState::kReachable, now);
}

bool NeighbourTable::erase(uint16_t port, uint32_t ip) {
  Slot* slot = find(port, ip);
  if (slot == nullptr) return false;
  write(*slot, make_key(port, ip, NeighbourState::kDeleted), 0);
  --live_;
  return true;
}

void NeighbourTable::age(uint64_t now, uint64_t reachable_time, uint64_t stale_time) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const uint64_t key = s.key.load(std::memory_order_relaxed);
    const NeighbourState state = state_of(key);
    const uint64_t age = now - confirmed_[i];
    if (state == NeighbourState::kReachable && age > reachable_time) {
      write(s, (key & ~uint64_t{0xff}) | static_cast<uint8_t>(NeighbourState::kStale),
            s.mac.load(std::memory_order_relaxed));
    } else if (state == NeighbourState::kStale && age > reachable_time + stale_time) {
      write(s, (key & ~uint64_t{0xff}) | static_cast<uint8_t>(NeighbourState::kDeleted), 0);
      --live_;
    }
  }
}

std::vector<NeighbourTable::Row> NeighbourTable::rows() const {
  std::vector<Row> out;
  for (const Slot& s : slots_) {
    const uint64_t key = s.key.load(std::memory_order_relaxed);
    const NeighbourState state = state_of(key);
    if (state == NeighbourState::kEmpty || state == NeighbourState::kDeleted) continue;
    out.push_back({static_cast<uint16_t>(key >> 16), static_cast<uint32_t>(key >> 32),
                   Neighbour{state, unpack_mac(s.mac.load(std::memory_order_relaxed))}});
  }
  return out;
}

}  // namespace dpgate::route
