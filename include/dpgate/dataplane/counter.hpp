// The data plane's counter: one writer (a worker), any number of readers
// (the control thread, telemetry). Include it where counters are defined.
#pragma once

#include <atomic>
#include <cstdint>

namespace dpgate::dataplane {

// add() is a plain load and store: no lock prefix on the fast path; readers
// on other threads see a recent value.
struct Counter {
  std::atomic<uint64_t> value{0};
  void add(uint64_t n) { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t get() const { return value.load(std::memory_order_relaxed); }
};

}  // namespace dpgate::dataplane
