// Catch2 main for tests that need no DPDK environment.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
