// Catch2 main for tests that run real DPDK code in-process: the EAL is started
// once with no hugepages, no PCI and no shared files, so tests run anywhere.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <rte_eal.h>

#include <array>

int main(int argc, char* argv[]) {
  std::array<const char*, 8> eal_args = {"dpgate-test", "--no-huge", "--no-pci", "-m", "512",
                                         "--no-shconf", "--log-level=lib.eal:error", "-l0"};
  if (rte_eal_init(static_cast<int>(eal_args.size()), const_cast<char**>(eal_args.data())) < 0) {
    return 1;
  }
  const int result = Catch::Session().run(argc, argv);
  rte_eal_cleanup();
  return result;
}
