// The daemon's control commands: what `dpgatectl` asks a running dpgate over
// the control socket (stats, apply, save, list, conntrack, ...), as handlers
// on a ControlServer over a Runtime. Used by the daemon and the control
// fuzzer, which register the same handlers. Control thread only.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "dpgate/conntrack/table.hpp"
#include "dpgate/control/runtime.hpp"
#include "dpgate/control/server.hpp"

namespace dpgate::control {

// Registers every command on `server`; the handlers keep a reference to
// `runtime`, which must outlive the server's last poll.
void register_commands(ControlServer& server, Runtime& runtime);

// `dpgatectl conntrack` arguments, in conntrack-tools' words: one of
// -L/-C/-D/-F, then filters. Errors are text. Any thread.
struct ConntrackCommand {
  char op = 'L';
  conntrack::FlowFilter filter;
};
std::variant<ConntrackCommand, std::string> parse_conntrack_args(
    const std::vector<std::string>& args);

}  // namespace dpgate::control
