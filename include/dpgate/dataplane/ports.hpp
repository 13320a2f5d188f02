// Bringing DPDK ports up from the config: probe the device (PCI or vdev),
// one RX and one TX queue per worker, symmetric RSS where the device has it,
// MTU, MAC. Control thread only, before workers start and after they stop.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "dpgate/control/config.hpp"
#include "dpgate/net/addr.hpp"

struct rte_mempool;

namespace dpgate::dataplane {

struct OpenedPort {
  uint16_t port_id = 0;
  net::MacAddr mac;
  bool rss = false;  // several queues spread by the device's (symmetric) RSS
  std::string driver;
};

struct QueueSetup {
  uint16_t queues = 1;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  rte_mempool* pool = nullptr;
};

std::variant<OpenedPort, std::string> open_port(const control::PortConfig& config,
                                                const QueueSetup& queues);
void close_port(uint16_t port_id);

// The Toeplitz key whose hash is the same for (a,b) and (b,a): both
// directions of a flow land on one queue.
extern const uint8_t kSymmetricRssKey[40];

}  // namespace dpgate::dataplane
