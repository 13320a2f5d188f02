#include "dpgate/route/fib.hpp"

#include <rte_errno.h>
#include <rte_lpm.h>

#include <algorithm>
#include <atomic>

namespace dpgate::route {

namespace {

// rte_lpm names its tables globally; readers of one table never see another.
std::atomic<unsigned> g_table_serial{0};

}  // namespace

std::variant<std::unique_ptr<Fib>, std::string> Fib::build(const std::vector<PortAddresses>& ports,
                                                           const std::vector<StaticRoute>& routes,
                                                           const std::string& name) {
  std::unique_ptr<Fib> fib(new Fib());
  auto add = [&](net::Ipv4Prefix prefix, NextHop nh) {
    prefix.addr &= prefix.mask();
    // Later entries for the same prefix replace earlier ones, as a kernel
    // replaces a route: local /32s and broadcasts win over connected routes.
    auto same = std::find_if(fib->entries_.begin(), fib->entries_.end(),
                             [&](const Entry& e) { return e.prefix == prefix; });
    if (same != fib->entries_.end()) {
      same->next_hop = nh;
    } else {
      fib->entries_.push_back({prefix, nh});
    }
  };

  for (const auto& port : ports) {
    for (const auto& a : port.addresses) {
      add({a.addr, a.len}, NextHop{NextHopKind::kForward, port.port, 0});
    }
  }
  for (const auto& r : routes) {
    if (r.gateway != 0) {
      const auto& port = *std::find_if(ports.begin(), ports.end(),
                                       [&](const PortAddresses& p) { return p.port == r.port; });
      const bool on_link = std::any_of(port.addresses.begin(), port.addresses.end(),
                                       [&](const net::Ipv4Prefix& a) { return a.contains(r.gateway); });
      if (!on_link) {
        return "route " + net::format_ipv4(r.prefix.addr) + "/" + std::to_string(r.prefix.len) +
               ": gateway " + net::format_ipv4(r.gateway) +
               " is not on a connected network of its port";
      }
    }
    add(r.prefix, NextHop{NextHopKind::kForward, r.port, r.gateway});
  }
  // Own addresses and directed broadcasts last, so they override the above.
  for (const auto& port : ports) {
    for (const auto& a : port.addresses) {
      if (a.len < 31) {
        add({a.addr | ~a.mask(), 32}, NextHop{NextHopKind::kDirectedBroadcast, port.port, 0});
      }
    }
  }
  for (const auto& port : ports) {
    for (const auto& a : port.addresses) add({a.addr, 32}, NextHop{NextHopKind::kLocal, port.port, 0});
  }

  rte_lpm_config cfg{};
  cfg.max_rules = static_cast<uint32_t>(std::max<size_t>(fib->entries_.size() * 2, 64));
  cfg.number_tbl8s = 256 + static_cast<uint32_t>(fib->entries_.size());
  const std::string lpm_name = name + "-" + std::to_string(g_table_serial.fetch_add(1));
  fib->lpm_ = rte_lpm_create(lpm_name.c_str(), SOCKET_ID_ANY, &cfg);
  if (fib->lpm_ == nullptr) {
    return "cannot create LPM table: " + std::string(rte_strerror(rte_errno));
  }
  for (const auto& e : fib->entries_) {
    auto it = std::find(fib->next_hops_.begin(), fib->next_hops_.end(), e.next_hop);
    const auto index = static_cast<uint32_t>(it - fib->next_hops_.begin());
    if (it == fib->next_hops_.end()) fib->next_hops_.push_back(e.next_hop);
    if (e.prefix.len == 0) {
      fib->default_next_hop_ = index;  // rte_lpm has no depth 0: the default sits beside it
      continue;
    }
    if (rte_lpm_add(fib->lpm_, e.prefix.addr, e.prefix.len, index) < 0) {
      return "cannot add route " + net::format_ipv4(e.prefix.addr) + "/" +
             std::to_string(e.prefix.len);
    }
  }
  fib->route_count_ = fib->entries_.size();
  return fib;
}

Fib::~Fib() { rte_lpm_free(lpm_); }

// Four addresses at a time with DPDK's vector lookup (misses come back as the
// default next hop, hits already masked), the rest one by one.
void Fib::lookup_bulk(const uint32_t* dst, uint32_t* next_hop, unsigned n) const {
  unsigned i = 0;
  for (; i + 4 <= n; i += 4) {
    const xmm_t four = _mm_loadu_si128(reinterpret_cast<const __m128i*>(dst + i));
    rte_lpm_lookupx4(lpm_, four, next_hop + i, default_next_hop_);
  }
  for (; i < n; ++i) next_hop[i] = lookup(dst[i]);
}

uint32_t Fib::lookup(uint32_t dst) const {
  uint32_t nh;
  return rte_lpm_lookup(lpm_, dst, &nh) == 0 ? nh : default_next_hop_;
}

}  // namespace dpgate::route
