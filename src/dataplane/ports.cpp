#include "dpgate/dataplane/ports.hpp"

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>

#include <cstring>

namespace dpgate::dataplane {

// 0x6d5a repeated (Woo & Park, "Scalable TCP Session Monitoring with RSS").
const uint8_t kSymmetricRssKey[40] = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a};

namespace {

std::string errno_text(int rc) { return rte_strerror(rc < 0 ? -rc : rc); }

std::variant<uint16_t, std::string> find_or_probe(const std::string& device) {
  const std::string name = device.substr(0, device.find(','));
  uint16_t port_id;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &port_id) == 0) return port_id;
  // A vdev spec or a PCI address the EAL has not probed yet.
  if (int rc = rte_dev_probe(device.c_str()); rc < 0) {
    return "cannot probe device '" + device + "': " + errno_text(rc);
  }
  if (rte_eth_dev_get_port_by_name(name.c_str(), &port_id) == 0) return port_id;
  return "device '" + device + "' was probed but is not an ethdev port";
}

}  // namespace

std::variant<OpenedPort, std::string> open_port(const control::PortConfig& config,
                                                const QueueSetup& q) {
  auto found = find_or_probe(config.device);
  if (auto* err = std::get_if<std::string>(&found)) return "port " + config.name + ": " + *err;
  OpenedPort out;
  out.port_id = std::get<uint16_t>(found);
  const uint16_t id = out.port_id;
  const std::string where = "port " + config.name + " (" + config.device + "): ";

  rte_eth_dev_info info;
  if (int rc = rte_eth_dev_info_get(id, &info); rc != 0) return where + "cannot read device info: " + errno_text(rc);
  out.driver = info.driver_name ? info.driver_name : "";
  if (info.max_rx_queues < q.queues || info.max_tx_queues < q.queues) {
    return where + "the device has " + std::to_string(info.max_rx_queues) + " RX / " +
           std::to_string(info.max_tx_queues) + " TX queues but " + std::to_string(q.queues) +
           " workers need one each (for net_af_packet set qpairs=" + std::to_string(q.queues) + ")";
  }

  rte_eth_conf conf;
  std::memset(&conf, 0, sizeof conf);
  const uint64_t rss_wanted = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
  if (q.queues > 1 && (info.flow_type_rss_offloads & rss_wanted) != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = const_cast<uint8_t*>(kSymmetricRssKey);
    conf.rx_adv_conf.rss_conf.rss_key_len = sizeof kSymmetricRssKey;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_wanted & info.flow_type_rss_offloads;
    out.rss = true;
  }
  if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) {
    conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
  }
  if (int rc = rte_eth_dev_configure(id, q.queues, q.queues, &conf); rc != 0) {
    return where + "cannot configure " + std::to_string(q.queues) + " queues: " + errno_text(rc);
  }
  uint16_t rx_desc = q.rx_descriptors, tx_desc = q.tx_descriptors;
  rte_eth_dev_adjust_nb_rx_tx_desc(id, &rx_desc, &tx_desc);
  const int socket = rte_eth_dev_socket_id(id);
  const unsigned socket_id = socket < 0 ? 0u : static_cast<unsigned>(socket);
  for (uint16_t queue = 0; queue < q.queues; ++queue) {
    if (int rc = rte_eth_rx_queue_setup(id, queue, rx_desc, socket_id, nullptr, q.pool); rc != 0) {
      return where + "RX queue " + std::to_string(queue) + ": " + errno_text(rc);
    }
    if (int rc = rte_eth_tx_queue_setup(id, queue, tx_desc, socket_id, nullptr); rc != 0) {
      return where + "TX queue " + std::to_string(queue) + ": " + errno_text(rc);
    }
  }
  uint16_t mtu = 0;
  if (rte_eth_dev_get_mtu(id, &mtu) != 0 || mtu != config.mtu) {
    if (int rc = rte_eth_dev_set_mtu(id, config.mtu); rc != 0 && rc != -ENOTSUP) {
      return where + "cannot set MTU " + std::to_string(config.mtu) + ": " + errno_text(rc);
    }
  }
  if (config.mac) {
    rte_ether_addr mac;
    std::memcpy(mac.addr_bytes, config.mac->bytes.data(), 6);
    if (int rc = rte_eth_dev_default_mac_addr_set(id, &mac); rc != 0) {
      return where + "cannot set MAC: " + errno_text(rc);
    }
  }
  if (int rc = rte_eth_dev_start(id); rc != 0) return where + "cannot start: " + errno_text(rc);
  if (config.promiscuous) rte_eth_promiscuous_enable(id);
  rte_ether_addr mac;
  rte_eth_macaddr_get(id, &mac);
  std::memcpy(out.mac.bytes.data(), mac.addr_bytes, 6);
  return out;
}

void close_port(uint16_t port_id) {
  rte_eth_dev_stop(port_id);
  rte_eth_dev_close(port_id);
}

}  // namespace dpgate::dataplane
