// How a fuzz target reports a broken invariant: print what was expected and
// abort, which libFuzzer records as a crash and saves the input for.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace dpgate::fuzz {

inline void invariant(bool holds, const char* what) {
  if (holds) [[likely]] return;
  std::fprintf(stderr, "dpgate fuzz: invariant broken: %s\n", what);
  std::abort();
}

}  // namespace dpgate::fuzz
