// dpgate's lines in DPDK's log (rte_log): the daemon's events under the
// logtype "dpgate" and the iptables LOG target's records under
// "dpgate.rules". Both follow the EAL's --log-level
// (--log-level=dpgate:debug, --log-level=dpgate.rules:warning) and go where
// the EAL sends its own messages: with Debian's DPDK 22.11, stderr and syslog
// (facility daemon, or the EAL's --syslog). Before the EAL starts, stderr only. Any thread may log; an EventLimiter belongs
// to the thread that uses it.
#pragma once

#include <rte_log.h>

#include <cstdint>

namespace dpgate::control {

// The registered logtypes (registered at program start, before the EAL).
int logtype_daemon();  // "dpgate", default level INFO
int logtype_rules();   // "dpgate.rules", default level DEBUG (every LOG record)

// One daemon event, "dpgate: " + the formatted text + "\n", at an RTE_LOG_*
// level (RTE_LOG_ERR, RTE_LOG_WARNING, RTE_LOG_NOTICE, RTE_LOG_INFO, RTE_LOG_DEBUG).
__attribute__((format(printf, 2, 3))) void log_event(uint32_t level, const char* fmt, ...);

// A token bucket for events a client or the network can repeat at will
// (refused applies, reloads): `burst` lines at once, then `per_second`.
// What it holds back is counted and reported with the next line it lets through.
class EventLimiter {
 public:
  EventLimiter(uint32_t per_second, uint32_t burst) : per_second_(per_second), burst_(burst), tokens_(burst) {}
  // Whether to log now (`now_ns`: a monotonic clock). When it returns true,
  // suppressed() says how many were held back since the last line.
  bool allow(uint64_t now_ns);
  uint64_t suppressed() const { return reported_suppressed_; }

 private:
  uint32_t per_second_, burst_;
  double tokens_;
  uint64_t last_ns_ = 0;
  uint64_t suppressed_ = 0, reported_suppressed_ = 0;
};

}  // namespace dpgate::control
