#include "dpgate/control/log.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>

// DPDK's logtype registration: constructors that run before main, so the
// EAL's --log-level finds the types when it parses its arguments.
RTE_LOG_REGISTER(dpgate_logtype_daemon, dpgate, INFO);
RTE_LOG_REGISTER(dpgate_logtype_rules, dpgate.rules, DEBUG);

namespace dpgate::control {

int logtype_daemon() { return dpgate_logtype_daemon; }
int logtype_rules() { return dpgate_logtype_rules; }

void log_event(uint32_t level, const char* fmt, ...) {
  if (!rte_log_can_log(static_cast<uint32_t>(dpgate_logtype_daemon), level)) return;
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  rte_log(level, static_cast<uint32_t>(dpgate_logtype_daemon), "dpgate: %s\n", text);
}

bool EventLimiter::allow(uint64_t now_ns) {
  if (last_ns_ != 0) {
    tokens_ = std::min<double>(burst_, tokens_ + static_cast<double>(now_ns - last_ns_) * per_second_ / 1e9);
  }
  last_ns_ = now_ns;
  if (tokens_ < 1) {
    ++suppressed_;
    return false;
  }
  tokens_ -= 1;
  reported_suppressed_ = suppressed_;
  suppressed_ = 0;
  return true;
}

}  // namespace dpgate::control
