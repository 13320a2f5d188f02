// What a random read of a large table costs on this host, apart from
// dpgate: the floor under the conntrack rows of perf/run.sh (a tracked
// packet reads a hash bucket and an entry of a table far larger than the
// caches). Not a test and not part of the harness's ratios: a probe of the
// machine, to be read next to them (perf/README.md, "Memory on this host").
//
// Usage: build-perf/perf/mem/mem_probe [--rounds N] [--large-mib M]
// Prints one JSON object per line, cycles in TSC ticks:
//   chase      one chain of dependent reads over SIZE, with and without
//              MADV_HUGEPAGE, and over 256 MiB of hugetlbfs pages when
//              vm.nr_hugepages has them: latency per read
//   burst      32 random lines prefetched in one loop, then WORK steps of
//              arithmetic, then read: the round's cost, with the lines'
//              pages missing the TLB (cold) or just touched (tlb_hot; the
//              lines flushed from the caches), and the work alone (cached)
//   two_reads  32 random lines read, then 32 more that depend on them, in
//              another random page or in the same page as the first
//   --large-mib the burst rows again over M MiB (4096: what a dpgate
//              replaying a 1 M-frame pcap maps): page tables that no longer
//              stay in the caches
#include <sys/mman.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kLine = 64;
constexpr size_t kPage = 4096;
constexpr unsigned kBurst = 32;

// An anonymous mapping of `bytes`, 2 MiB aligned, every page touched: 4 KiB
// pages, transparent huge pages (MADV_HUGEPAGE), or 2 MiB pages of hugetlbfs
// (MAP_HUGETLB, what DPDK maps without --no-huge; `base` stays null when
// vm.nr_hugepages has too few).
enum class Pages { k4k, kThp, kHugetlb };

struct Region {
  uint8_t* base = nullptr;
  size_t bytes = 0;
  size_t mapped = 0;
  void* map = nullptr;

  Region(size_t size, bool huge) : Region(size, huge ? Pages::kThp : Pages::k4k) {}
  Region(size_t size, Pages pages) : bytes(size), mapped(size + 2 * kMiB) {
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | (pages == Pages::kHugetlb ? MAP_HUGETLB : 0);
    map = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (map == MAP_FAILED && pages == Pages::kHugetlb) {
      map = nullptr;
      return;
    }
    if (map == MAP_FAILED) {
      std::perror("mem_probe: mmap");
      std::exit(1);
    }
    base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(map) + 2 * kMiB - 1) & ~(2 * kMiB - 1));
    if (pages != Pages::kHugetlb) madvise(base, bytes, pages == Pages::kThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    for (size_t i = 0; i < bytes; i += kPage) base[i] = 1;
  }
  ~Region() {
    if (map != nullptr) munmap(map, mapped);
  }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
};

// Steps of a dependent multiply-add chain: work the core does while fetches
// are in flight, which the compiler cannot drop or reorder across.
inline uint64_t work(uint64_t x, unsigned steps) {
  for (unsigned k = 0; k < steps; ++k) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    asm volatile("" : "+r"(x));
  }
  return x;
}

// Ticks per read, or a negative number when the region could not be mapped.
double chase(size_t size, Pages pages, std::mt19937_64& rng) {
  Region r(size, pages);
  if (r.base == nullptr) return -1;
  const size_t lines = size / kLine;
  std::vector<uint32_t> order(lines);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i = 0; i < lines; ++i) {
    const uint64_t next = uint64_t{order[(i + 1) % lines]} * kLine;
    std::memcpy(r.base + uint64_t{order[i]} * kLine, &next, 8);
  }
  const unsigned steps = 2'000'000;
  uint64_t at = uint64_t{order[0]} * kLine;
  const uint64_t t0 = __rdtsc();
  for (unsigned s = 0; s < steps; ++s) std::memcpy(&at, r.base + at, 8);
  const uint64_t t1 = __rdtsc();
  asm volatile("" ::"r"(at));
  return double(t1 - t0) / steps;
}

double burst(const Region& r, unsigned steps, bool tlb_hot, unsigned rounds, std::mt19937_64& rng) {
  const size_t lines = r.bytes / kLine;
  uint64_t total = 0, sink = 0;
  uint64_t at[kBurst];
  for (unsigned round = 0; round < rounds; ++round) {
    for (auto& a : at) a = rng() % lines * kLine;
    if (tlb_hot) {
      for (auto a : at) sink += r.base[a];
      for (auto a : at) _mm_clflush(r.base + a);
      _mm_mfence();
    }
    const uint64_t t0 = __rdtsc();
    for (auto a : at) __builtin_prefetch(r.base + a);
    uint64_t x = work(sink, steps);
    for (auto a : at) x += r.base[a];
    total += __rdtsc() - t0;
    sink ^= x;
  }
  asm volatile("" ::"r"(sink));
  return double(total) / rounds;
}

double two_reads(const Region& r, bool same_page, unsigned rounds, std::mt19937_64& rng) {
  const size_t lines = r.bytes / kLine;
  uint64_t total = 0, sink = 0;
  uint64_t first[kBurst], second[kBurst];
  for (unsigned round = 0; round < rounds; ++round) {
    for (auto& a : first) a = rng() % lines * kLine;
    const uint64_t t0 = __rdtsc();
    for (auto a : first) __builtin_prefetch(r.base + a);
    for (unsigned i = 0; i < kBurst; ++i) {
      const uint64_t v = r.base[first[i]] & 1;  // the second address depends on the first read
      const uint64_t pick = rng();
      second[i] = (same_page ? (first[i] & ~uint64_t{kPage - 1}) + pick % (kPage / kLine) * kLine
                             : pick % lines * kLine) +
                  v;
      __builtin_prefetch(r.base + second[i]);
    }
    for (auto a : second) sink += r.base[a];
    total += __rdtsc() - t0;
  }
  asm volatile("" ::"r"(sink));
  return double(total) / rounds;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned rounds = 20'000;
  size_t large_mib = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--rounds") rounds = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 0));
    if (std::string(argv[i]) == "--large-mib") large_mib = std::strtoul(argv[i + 1], nullptr, 0);
  }
  std::mt19937_64 rng(20261205);
  for (size_t mib : {4, 32, 256}) {
    for (bool huge : {false, true}) {
      std::printf("{\"probe\": \"chase\", \"mib\": %zu, \"thp\": %d, \"tsc_per_read\": %.1f}\n", mib, huge,
                  chase(mib * kMiB, huge ? Pages::kThp : Pages::k4k, rng));
    }
  }
  // hugetlbfs pages, where the host has them reserved (vm.nr_hugepages >= 129)
  const double hugetlb = chase(256 * kMiB, Pages::kHugetlb, rng);
  if (hugetlb >= 0) {
    std::printf("{\"probe\": \"chase\", \"mib\": 256, \"hugetlb\": 1, \"tsc_per_read\": %.1f}\n", hugetlb);
  } else {
    std::printf("{\"probe\": \"chase\", \"mib\": 256, \"hugetlb\": 1, \"skipped\": \"no hugepages reserved\"}\n");
  }
  // One row per amount of work and per TLB state of the burst's pages.
  auto burst_rows = [&](const Region& r, size_t mib, std::initializer_list<unsigned> work) {
    for (unsigned steps : work) {
      for (bool hot : {false, true}) {
        std::printf("{\"probe\": \"burst\", \"mib\": %zu, \"work_steps\": %u, \"lines\": \"%s\", "
                    "\"tsc_per_round\": %.0f}\n",
                    mib, steps, hot ? "tlb_hot" : "cold", burst(r, steps, hot, rounds, rng));
      }
    }
  };
  const Region table(256 * kMiB, true);
  burst_rows(table, 256, {0u, 250u, 1000u});
  // The work alone: a region that stays in the caches and the TLB.
  const Region small(4 * kMiB, true);
  std::printf("{\"probe\": \"burst\", \"mib\": 4, \"work_steps\": 1000, \"lines\": \"cached\", "
              "\"tsc_per_round\": %.0f}\n",
              burst(small, 1000, false, rounds, rng));
  for (bool same : {false, true}) {
    std::printf("{\"probe\": \"two_reads\", \"mib\": 256, \"same_page\": %d, \"tsc_per_round\": %.0f}\n", same,
                two_reads(table, same, rounds, rng));
  }
  if (large_mib != 0) {
    const Region large(large_mib * kMiB, true);
    burst_rows(large, large_mib, {0u, 1000u});
  }
  return 0;
}
