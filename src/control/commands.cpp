#include "dpgate/control/commands.hpp"

#include <charconv>
#include <optional>

#include "dpgate/conntrack/format.hpp"
#include "dpgate/net/addr.hpp"

namespace dpgate::control {

namespace {

// A decimal number up to `max`. Anything else (a sign, a space, more digits
// than fit) is nullopt, never an exception: a handler that throws takes the
// daemon down with it.
std::optional<uint32_t> parse_decimal(const std::string& text, uint32_t max) {
  uint32_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || value > max) return std::nullopt;
  return value;
}

}  // namespace

std::variant<ConntrackCommand, std::string> parse_conntrack_args(
    const std::vector<std::string>& args) {
  using net::IpAddr;
  ConntrackCommand cmd;
  auto address = [](const std::string& text) -> std::optional<IpAddr> {
    auto a = net::parse_ipv4(text);
    if (!a) return std::nullopt;
    return IpAddr::from_v4(net::to_be32(*a));
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "-L" || a == "--dump") {
      cmd.op = 'L';
    } else if (a == "-C" || a == "--count") {
      cmd.op = 'C';
    } else if (a == "-D" || a == "--delete") {
      cmd.op = 'D';
    } else if (a == "-F" || a == "--flush") {
      cmd.op = 'F';
    } else if (a == "-p" || a == "--proto") {
      auto v = value();
      if (!v) return std::string("-p needs a protocol");
      if (*v == "tcp") {
        cmd.filter.proto = 6;
      } else if (*v == "udp") {
        cmd.filter.proto = 17;
      } else if (*v == "icmp") {
        cmd.filter.proto = 1;
      } else if (auto number = parse_decimal(*v, 255)) {
        cmd.filter.proto = static_cast<uint8_t>(*number);
      } else {
        return "unknown protocol '" + *v + "'";
      }
    } else if (a == "-s" || a == "--orig-src" || a == "--src" || a == "-d" || a == "--orig-dst" ||
               a == "--dst" || a == "-r" || a == "--reply-src" || a == "-q" || a == "--reply-dst") {
      auto v = value();
      auto ip = v ? address(*v) : std::nullopt;
      if (!ip) return a + " needs an IPv4 address";
      if (a == "-s" || a == "--orig-src" || a == "--src") {
        cmd.filter.orig_src = ip;
      } else if (a == "-d" || a == "--orig-dst" || a == "--dst") {
        cmd.filter.orig_dst = ip;
      } else if (a == "-r" || a == "--reply-src") {
        cmd.filter.reply_src = ip;
      } else {
        cmd.filter.reply_dst = ip;
      }
    } else if (a == "--dst-nat" || a == "--src-nat") {
      auto v = value();
      auto ip = v ? address(*v) : std::nullopt;
      if (!ip) return a + " needs an IPv4 address";
      (a == "--dst-nat" ? cmd.filter.dst_nat : cmd.filter.src_nat) = ip;
    } else if (a == "--sport" || a == "--orig-port-src" || a == "--dport" ||
               a == "--orig-port-dst") {
      auto v = value();
      auto number = v ? parse_decimal(*v, 65535) : std::nullopt;
      if (!number) return a + " needs a port number";
      const auto port = net::to_be16(static_cast<uint16_t>(*number));
      (a == "--sport" || a == "--orig-port-src" ? cmd.filter.orig_sport : cmd.filter.orig_dport) =
          port;
    } else if (a == "-m" || a == "--mark") {
      auto v = value();
      if (!v) return std::string("--mark needs a value");
      const size_t slash = v->find('/');
      try {
        cmd.filter.mark = static_cast<uint32_t>(std::stoul(v->substr(0, slash), nullptr, 0));
        if (slash != std::string::npos) {
          cmd.filter.mark_mask =
              static_cast<uint32_t>(std::stoul(v->substr(slash + 1), nullptr, 0));
        }
      } catch (const std::exception&) {
        return "bad mark '" + *v + "'";
      }
    } else {
      return "unknown option '" + a + "'";
    }
  }
  return cmd;
}

void register_commands(ControlServer& server, Runtime& runtime) {
  server.on("stats", "per-port and per-worker counters, drops by reason",
            [&runtime](const Request&) {
              return Reply{true, runtime.stats_text()};
            });
  server.on("neigh", "the neighbour (ARP) table", [&runtime](const Request&) {
    return Reply{true, runtime.neighbours_text()};
  });
  server.on("route", "the forwarding table", [&runtime](const Request&) {
    return Reply{true, runtime.routes_text()};
  });
  server.on("metrics", "counters in Prometheus text format", [&runtime](const Request&) {
    return Reply{true, runtime.metrics_text()};
  });
  server.on("apply", "apply iptables-restore text (the body): [--noflush] [--test] [--source=NAME]",
            [&runtime](const Request& req) {
              bool noflush = false, test = false;
              std::string source = "<stdin>";
              for (const auto& a : req.args) {
                if (a == "--noflush") {
                  noflush = true;
                } else if (a == "--test") {
                  test = true;
                } else if (a.rfind("--source=", 0) == 0) {
                  source = a.substr(9);
                } else {
                  return Reply::error("apply: unknown option '" + a + "'\n");
                }
              }
              auto applied = runtime.rules().apply(req.body, source, noflush, test);
              if (auto* err = std::get_if<std::string>(&applied)) return Reply::error(*err + "\n");
              return Reply{true, (test ? "test only, nothing applied: " : "") +
                                     std::get<ApplyResult>(applied).summary()};
            });
  server.on("save", "the running rules as iptables-save text: [-c] [-t TABLE]",
            [&runtime](const Request& req) {
              bool counters = false;
              std::string table;
              for (size_t i = 0; i < req.args.size(); ++i) {
                if (req.args[i] == "-c") {
                  counters = true;
                } else if (req.args[i] == "-t" && i + 1 < req.args.size()) {
                  table = req.args[++i];
                  if (table != "raw" && table != "mangle" && table != "nat" && table != "filter") {
                    return Reply::error("save: unknown table '" + table + "'\n");
                  }
                } else {
                  return Reply::error("save: unknown option '" + req.args[i] + "'\n");
                }
              }
              return Reply{true, runtime.rules().save(counters, table)};
            });
  server.on("conntrack",
            "flows as conntrack-tools shows them: -L|-C|-D|-F [-p P] [-s|-d|-r|-q ADDR] "
            "[--sport|--dport N] [--dst-nat ADDR] [--src-nat ADDR] [-m MARK[/MASK]]",
            [&runtime](const Request& req) {
              auto parsed = parse_conntrack_args(req.args);
              if (auto* err = std::get_if<std::string>(&parsed))
                return Reply::error("conntrack: " + *err + "\n");
              const auto& cmd = std::get<ConntrackCommand>(parsed);
              using Op = dataplane::FlowRequest::Op;
              std::string text;
              const Op op = cmd.op == 'D' ? Op::kDelete : cmd.op == 'F' ? Op::kFlush : Op::kList;
              auto result = runtime.flows(op, cmd.filter, [&](const conntrack::FlowInfo& f) {
                if (cmd.op == 'L') text += conntrack::format_conntrack(f) + "\n";
              });
              if (auto* err = std::get_if<std::string>(&result))
                return Reply::error("conntrack: " + *err + "\n");
              const uint64_t n = std::get<uint64_t>(result);
              if (cmd.op == 'C') text = std::to_string(n) + "\n";
              if (cmd.op == 'D' || cmd.op == 'F')
                text = std::to_string(n) + " flow entries have been deleted.\n";
              return Reply{true, text};
            });
  server.on("list", "rules as iptables -L -v -n: [-t TABLE] [CHAIN] [-x] (-v -n accepted)",
            [&runtime](const Request& req) {
              std::string table, chain;
              bool exact = false;
              for (size_t i = 0; i < req.args.size(); ++i) {
                const std::string& a = req.args[i];
                if (a == "-t" && i + 1 < req.args.size()) {
                  table = req.args[++i];
                } else if (a == "-x") {
                  exact = true;
                } else if (a == "-v" || a == "-n" || a == "-vn" || a == "-nv" || a == "-L") {
                } else if (a[0] != '-' && chain.empty()) {
                  chain = a;
                } else {
                  return Reply::error("list: unknown option '" + a + "'\n");
                }
              }
              auto [ok, text] = runtime.rules().list(table, chain, exact);
              return ok ? Reply{true, text} : Reply::error("list: " + text + "\n");
            });
  server.on("zero", "reset rule counters", [&runtime](const Request&) {
    runtime.rules().zero();
    return Reply{true, ""};
  });
  server.on("generation", "the running rules' generation", [&runtime](const Request&) {
    const auto* current = runtime.rules().current();
    return Reply{true, std::to_string(current ? current->generation : 0) + "\n"};
  });
}

}  // namespace dpgate::control
