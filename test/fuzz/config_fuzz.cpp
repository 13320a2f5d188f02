// load_config_text on arbitrary text. It must never crash or throw; an error
// must say where and why; an accepted Config must satisfy everything Runtime
// and the workers index and size by without checking again (port count and
// addresses within the fixed arrays, route and neighbour ports that exist,
// burst within kMaxBurst, a pool big enough for the queues).
#include <cstdint>
#include <string>
#include <variant>

#include "dpgate/control/config.hpp"
#include "dpgate/dataplane/router.hpp"
#include "invariant.hpp"

using namespace dpgate;
using fuzz::invariant;

namespace {

void check_config(const control::Config& c) {
  invariant(!c.ports.empty() && c.ports.size() <= dataplane::kMaxPorts, "1..kMaxPorts ports");
  for (const auto& p : c.ports) {
    invariant(!p.name.empty() && p.name.size() <= 15, "port names are 1..15 characters");
    invariant(!p.device.empty(), "every port has a device");
    invariant(p.addresses.size() <= dataplane::kMaxAddressesPerPort, "at most kMaxAddressesPerPort addresses");
    invariant(p.mtu >= 68 && p.mtu <= 9000, "MTU 68..9000");
    for (const auto& a : p.addresses) invariant(a.len <= 32, "prefix length <= 32");
  }
  for (const auto& r : c.routes) {
    invariant(r.port < c.ports.size(), "a route's port exists");
    invariant(r.prefix.len <= 32, "route prefix length <= 32");
  }
  for (const auto& n : c.neighbours) {
    invariant(n.port < c.ports.size(), "a neighbour's port exists");
    invariant(!n.mac.is_multicast(), "static neighbours are unicast");
  }
  invariant(c.workers >= 1 && c.workers <= 64, "1..64 workers");
  invariant(c.burst >= 1 && c.burst <= dataplane::kMaxBurst, "burst 1..kMaxBurst");
  invariant(c.arp_queue >= 1 && c.arp_table_size >= 16, "ARP queue and table are not empty");
  invariant(c.mbuf_cache_size <= 512, "mbuf cache <= RTE_MEMPOOL_CACHE_MAX_SIZE");
  const uint64_t min_pool = uint64_t{c.ports.size()} * c.workers * (c.rx_descriptors + c.tx_descriptors + c.burst) +
                            uint64_t{c.workers} * c.arp_queue;
  invariant(c.mbuf_pool_size >= min_pool, "the pool holds every queue's mbufs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // libconfig's @include reads other files: keep the fuzzer inside its input.
  if (text.find("@include") != std::string::npos) return -1;
  auto loaded = control::load_config_text(text, "fuzz.conf");
  if (auto* e = std::get_if<control::ConfigError>(&loaded)) {
    invariant(!e->reason.empty(), "an error says why");
    invariant(e->to_string().rfind("fuzz.conf", 0) == 0, "an error names the file");
    return 0;
  }
  check_config(std::get<control::Config>(loaded));
  return 0;
}
