// Hyperscan alone, without dpgate: the cost of one hs_scan of the bench's
// datagrams against the bench's pattern sets (match_bench.cpp: 8 random
// lower-case letters and the rule's number), compiled several ways. The
// figures behind perf/match/README.md's "Why the 1000-pattern scan costs
// what it does". Usage: hs_probe [PAYLOAD_BYTES]; prints one JSON object per
// pattern count and variant:
//   expr        \xHH-escaped expressions, HS_FLAG_SINGLEMATCH, host platform
//               (what match::PayloadDatabase compiles)
//   literal     hs_compile_lit_multi of the same bytes
//   max_off200  expr with max_offset 200 on every pattern
//   min_off1000 expr with min_offset 1000 + length on every pattern
//   avx2        expr compiled for AVX2 (the runtime still dispatches on the host)
//   generic     expr compiled for no CPU feature
// Times are this thread's CPU time; not a test: numbers, not verdicts.
#include <hs/hs.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "bench_data.hpp"

namespace {

double thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

int on_match(unsigned int id, unsigned long long, unsigned long long, unsigned int, void* ctx) {
  static_cast<uint64_t*>(ctx)[id >> 6] |= uint64_t{1} << (id & 63);
  return 0;
}

std::string escaped(const std::string& bytes) {
  std::string out;
  char buf[8];
  for (char c : bytes) {
    std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(uint8_t(c)));
    out += buf;
  }
  return out;
}

struct Variant {
  const char* name;
  bool literal;
  unsigned long long max_offset, min_offset;  // 0: none
  long long features;                          // -1: the host's
};

hs_database_t* compile(const std::vector<std::string>& pats, const Variant& v) {
  std::vector<std::string> exprs;
  std::vector<const char*> ptrs;
  std::vector<unsigned> flags, ids;
  std::vector<size_t> lens;
  std::vector<hs_expr_ext_t> exts(pats.size());
  std::vector<const hs_expr_ext_t*> ext_ptrs;
  for (size_t i = 0; i < pats.size(); ++i) exprs.push_back(v.literal ? pats[i] : escaped(pats[i]));
  for (size_t i = 0; i < pats.size(); ++i) {
    ptrs.push_back(exprs[i].c_str());
    flags.push_back(HS_FLAG_SINGLEMATCH);
    ids.push_back(unsigned(i));
    lens.push_back(pats[i].size());
    exts[i] = hs_expr_ext_t{};
    if (v.max_offset != 0) {
      exts[i].flags |= HS_EXT_FLAG_MAX_OFFSET;
      exts[i].max_offset = v.max_offset;
    }
    if (v.min_offset != 0) {
      exts[i].flags |= HS_EXT_FLAG_MIN_OFFSET;
      exts[i].min_offset = v.min_offset + pats[i].size();
    }
    ext_ptrs.push_back(&exts[i]);
  }
  hs_platform_info_t platform;
  hs_populate_platform(&platform);
  if (v.features >= 0) platform.cpu_features = (unsigned long long)v.features;
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  const unsigned n = unsigned(pats.size());
  const hs_error_t rc =
      v.literal ? hs_compile_lit_multi(ptrs.data(), flags.data(), ids.data(), lens.data(), n, HS_MODE_BLOCK,
                                       &platform, &db, &err)
                : hs_compile_ext_multi(ptrs.data(), flags.data(), ids.data(), ext_ptrs.data(), n, HS_MODE_BLOCK,
                                       &platform, &db, &err);
  if (rc != HS_SUCCESS) {
    std::fprintf(stderr, "%s: %s\n", v.name, err != nullptr ? err->message : "compile error");
    std::exit(1);
  }
  return db;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t payload_bytes = argc > 1 ? size_t(std::atoi(argv[1])) : 1400;
  std::mt19937 rng(7);
  const std::vector<std::string> ds = datagrams(payload_bytes, rng);  // the bench's (bench_data.hpp)
  const Variant variants[] = {
      {"expr", false, 0, 0, -1},       {"literal", true, 0, 0, -1},
      {"max_off200", false, 200, 0, -1}, {"min_off1000", false, 0, 1000, -1},
      {"avx2", false, 0, 0, HS_CPU_FEATURES_AVX2}, {"generic", false, 0, 0, 0},
  };
  for (size_t n : {1, 10, 100, 799, 800, 1000}) {
    std::vector<std::string> pats;
    for (size_t i = 0; i < n; ++i) {
      std::string p;
      for (int k = 0; k < 8; ++k) p += char('a' + rng() % 26);
      pats.push_back(p + std::to_string(i));
    }
    for (const Variant& v : variants) {
      hs_database_t* db = compile(pats, v);
      hs_scratch_t* scratch = nullptr;
      char* info = nullptr;
      size_t bytes = 0;
      if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS || hs_database_info(db, &info) != HS_SUCCESS ||
          hs_database_size(db, &bytes) != HS_SUCCESS) {
        std::exit(1);
      }
      uint64_t found[32] = {};
      size_t done = 0, reps = 1;
      const double t0 = thread_cpu_ns();
      double now = t0;
      do {
        for (size_t r = 0; r < reps; ++r) {
          for (const auto& d : ds) {
            if (hs_scan(db, d.data(), unsigned(d.size()), 0, scratch, on_match, found) != HS_SUCCESS) std::exit(1);
          }
        }
        done += reps * ds.size();
        const double before = now;
        now = thread_cpu_ns();
        if (now - before < 200e3) reps *= 2;
      } while (now - t0 < 200e6);
      std::printf("{\"patterns\": %zu, \"payload_bytes\": %zu, \"variant\": \"%s\", \"info\": \"%s\", "
                  "\"db_bytes\": %zu, \"scan_ns\": %.1f, \"found\": %d}\n",
                  n, payload_bytes, v.name, info, bytes, (now - t0) / double(done), int(found[0] != 0));
      std::fflush(stdout);
      std::free(info);
      hs_free_scratch(scratch);
      hs_free_database(db);
    }
  }
  return 0;
}
