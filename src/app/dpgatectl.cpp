// dpgatectl: dpgate's command-line tool. Offline rules commands (check,
// simulate) and commands to a running dpgate over its control socket
// (apply, save, stats, conntrack, ...), in one subcommand table.
// Runs in its own process, single-threaded.
#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "dpgate/control/server.hpp"
#include "dpgate/rules/interpreter.hpp"
#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/program.hpp"
#include "dpgate/rules/save.hpp"

namespace {

using namespace dpgate::rules;
using Args = std::vector<std::string>;

struct Subcommand {
  const char* name;
  const char* usage;
  std::function<int(const Args&)> run;
};

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

// Parses FILE (and applies further FILEs with --noflush); prints the error.
bool load(const std::vector<std::string>& files, Ruleset& rs) {
  for (size_t k = 0; k < files.size(); ++k) {
    std::string text;
    if (!read_file(files[k], text)) {
      std::fprintf(stderr, "%s: cannot read: %s\n", files[k].c_str(), std::strerror(errno));
      return false;
    }
    auto next = apply_ruleset(rs, text, files[k], ParseOptions{k > 0});
    if (!next) {
      std::fprintf(stderr, "%s\n", next.error().to_string().c_str());
      return false;
    }
    rs = std::move(*next);
  }
  return true;
}

// dpgatectl check [--save] FILE [NOFLUSH-FILE...]
int cmd_check(const Args& args) {
  bool save = false;
  std::vector<std::string> files;
  for (const auto& a : args) {
    if (a == "--save") save = true;
    else files.push_back(a);
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: dpgatectl check [--save] FILE [FILE applied with --noflush...]\n");
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Ruleset rs;
  if (!load(files, rs)) return 1;
  const auto t1 = std::chrono::steady_clock::now();
  auto prog = compile_ruleset(rs);
  const auto t2 = std::chrono::steady_clock::now();
  if (!prog) {
    std::fprintf(stderr, "%s\n", prog.error().to_string().c_str());
    return 1;
  }
  if (save) {
    std::fputs(save_ruleset(rs, SaveOptions{rs.has_rule_counters()}).c_str(), stdout);
    return 0;
  }
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  const auto& s = prog->stats();
  std::printf("%s: ok: %zu tables, %zu chains, %zu rules; parsed in %.1f ms, compiled in %.1f ms "
              "(%u rules in %u hash lookups of at most %u probes, %u in %u classifiers, %u linear; "
              "%u option-less port matches tested in the rule header)\n",
              files[0].c_str(), rs.table_count(), rs.chain_count(), rs.rule_count(), ms(t1 - t0),
              ms(t2 - t1), s.hashed_rules, s.hash_segments, s.hash_max_probes, s.classified_rules,
              s.classifier_segments, s.linear_rules, s.header_only_matches);
  return 0;
}

bool parse_addr_port(const std::string& s, uint32_t& addr, uint16_t& port) {
  size_t colon = s.find(':');
  in_addr a{};
  if (inet_pton(AF_INET, s.substr(0, colon).c_str(), &a) != 1) return false;
  addr = ntohl(a.s_addr);
  port = 0;
  if (colon != std::string::npos) {
    char* end = nullptr;
    unsigned long p = std::strtoul(s.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || p > 65535) return false;
    port = uint16_t(p);
  }
  return true;
}

std::string ip(uint32_t a) {
  in_addr x{htonl(a)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &x, buf, sizeof buf);
  return buf;
}

std::string nat_text(const NatTarget& n) {
  std::string s = n.kind == NatTarget::Kind::kDnat         ? "DNAT"
                  : n.kind == NatTarget::Kind::kSnat       ? "SNAT"
                  : n.kind == NatTarget::Kind::kMasquerade ? "MASQUERADE"
                                                           : "REDIRECT";
  if (n.has_addr) {
    s += " " + ip(n.min_addr);
    if (n.max_addr != n.min_addr) s += "-" + ip(n.max_addr);
  }
  if (n.has_port) {
    s += ":" + std::to_string(n.min_port);
    if (n.max_port != n.min_port) s += "-" + std::to_string(n.max_port);
  }
  return s;
}

// dpgatectl simulate FILE 'PROTO SRC[:PORT] -> DST[:PORT] [in IF] [out IF]' [options]
int cmd_simulate(const Args& args) {
  const char* usage =
      "usage: dpgatectl simulate FILE 'tcp 198.18.0.5:40000 -> 198.19.0.10:80 in eth0 [out eth1]'\n"
      "       [--local ADDR]... [--ctstate NEW|ESTABLISHED|RELATED|INVALID] [--mark N]\n"
      "       [--from-local] [--seed N]\n";
  if (args.size() < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  Ruleset rs;
  if (!load({args[0]}, rs)) return 1;
  auto prog = compile_ruleset(rs);
  if (!prog) {
    std::fprintf(stderr, "%s\n", prog.error().to_string().c_str());
    return 1;
  }
  Packet p;
  std::vector<uint32_t> local;
  bool from_local = false;
  uint64_t seed = 1;
  {
    std::istringstream spec(args[1]);
    std::string proto, src, arrow, dst, word;
    spec >> proto >> src >> arrow >> dst;
    if (proto == "tcp") p.proto = 6;
    else if (proto == "udp") p.proto = 17;
    else if (proto == "icmp") p.proto = 1;
    else p.proto = uint8_t(std::atoi(proto.c_str()));
    if (arrow != "->" || !parse_addr_port(src, p.src, p.sport) || !parse_addr_port(dst, p.dst, p.dport)) {
      std::fprintf(stderr, "simulate: expected 'PROTO SRC[:PORT] -> DST[:PORT]' but found '%s'\n", args[1].c_str());
      return 2;
    }
    while (spec >> word) {
      std::string name;
      spec >> name;
      if (word == "in") p.set_in_iface(name.c_str());
      else if (word == "out") p.set_out_iface(name.c_str());
      else {
        std::fprintf(stderr, "simulate: expected 'in IF' or 'out IF' but found '%s'\n", word.c_str());
        return 2;
      }
    }
  }
  p.tcp_flags = 0x02;  // a NEW connection's SYN
  p.icmp_type = 8;
  p.length = 60;
  for (size_t k = 2; k < args.size(); ++k) {
    const std::string& a = args[k];
    auto value = [&]() -> std::string { return k + 1 < args.size() ? args[++k] : std::string(); };
    if (a == "--local") {
      uint32_t addr;
      uint16_t port;
      if (!parse_addr_port(value(), addr, port)) {
        std::fprintf(stderr, "simulate: --local expects an IPv4 address\n");
        return 2;
      }
      local.push_back(addr);
    } else if (a == "--ctstate") {
      std::string v = value();
      p.ct_state = v == "NEW"           ? ct_state::kNew
                   : v == "ESTABLISHED" ? ct_state::kEstablished
                   : v == "RELATED"     ? ct_state::kRelated
                   : v == "INVALID"     ? ct_state::kInvalid
                                        : 0;
      if (p.ct_state == 0) {
        std::fprintf(stderr, "simulate: --ctstate expects NEW, ESTABLISHED, RELATED or INVALID\n");
        return 2;
      }
    } else if (a == "--mark") {
      p.mark = uint32_t(std::strtoul(value().c_str(), nullptr, 0));
    } else if (a == "--from-local") {
      from_local = true;
    } else if (a == "--seed") {
      seed = std::strtoull(value().c_str(), nullptr, 0);
    } else {
      std::fputs(usage, stderr);
      return 2;
    }
  }
  auto is_local = [&](uint32_t a) {
    for (uint32_t l : local) {
      if (l == a) return true;
    }
    return (a >> 24) == 127;
  };
  p.ct_orig = {p.src, p.dst, p.sport, p.dport, p.proto};
  p.ct_reply = {p.dst, p.src, p.dport, p.sport, p.proto};

  Interpreter interp(rs);
  SimpleMatchState si(seed), sp(seed);
  std::vector<Hook> path;
  if (from_local) path = {Hook::kOutput, Hook::kPostrouting};
  else path = {Hook::kPrerouting};
  bool agree = true;
  HookResult total;
  for (size_t h = 0; h < path.size(); ++h) {
    p.src_type = is_local(p.src) ? addr_type::kLocal : addr_type::kUnicast;
    p.dst_type = is_local(p.dst) ? addr_type::kLocal : addr_type::kUnicast;
    std::vector<TraceStep> trace;
    HookResult r = interp.evaluate(path[h], p, si, &trace);
    HookResult c = prog->evaluate(path[h], p, sp);
    agree &= r == c;
    std::printf("%s:\n", hook_name(path[h]));
    for (const auto& t : trace) {
      if (t.what == "rule") {
        const Chain* ch = rs.table(t.table).find(t.chain);
        std::printf("  %-6s %s %s #%u %s\n", table_name(t.table), t.matched ? "match" : "     ",
                    t.chain.c_str(), t.rule_number,
                    t.matched ? ("-A " + t.chain + rule_spec_text(ch->rules[t.rule_number - 1])).c_str() : "");
      } else {
        std::printf("  %-6s %s %s %s\n", table_name(t.table), "     ", t.chain.c_str(), t.what.c_str());
      }
    }
    if (r.has_dnat) {
      total.has_dnat = true;
      total.dnat = r.dnat;
      if (r.dnat.has_addr) p.dst = r.dnat.min_addr;
      if (r.dnat.has_port) p.dport = r.dnat.min_port;
      p.ct_state |= ct_state::kDnat;
    }
    if (r.has_snat) {
      total.has_snat = true;
      total.snat = r.snat;
    }
    p.mark = r.mark;
    p.ct_mark = r.ct_mark;
    total.mark = r.mark;
    total.action = r.action;
    if (r.notrack) p.ct_state = ct_state::kUntracked;
    if (r.action != Action::kAccept) break;
    if (path[h] == Hook::kPrerouting) {
      if (is_local(p.dst)) {
        path.push_back(Hook::kInput);
      } else {
        path.push_back(Hook::kForward);
        path.push_back(Hook::kPostrouting);
      }
    }
  }
  const char* verdict = total.action == Action::kAccept ? "ACCEPT"
                        : total.action == Action::kDrop ? "DROP"
                                                        : "REJECT";
  std::printf("result: %s", verdict);
  if (total.has_dnat) std::printf(", %s", nat_text(total.dnat).c_str());
  if (total.has_snat) std::printf(", %s", nat_text(total.snat).c_str());
  std::printf(", mark 0x%x\n", total.mark);
  std::printf("program: %s\n", agree ? "same result as the interpreter" : "DIFFERS from the interpreter");
  return agree ? 0 : 3;
}

std::string g_socket = "/run/dpgate/dpgate.sock";

// Sends one request to the running dpgate; prints the reply (errors to stderr).
int remote(const std::string& line, const std::string& body = "") {
  auto reply = dpgate::control::call(g_socket, line, body);
  if (auto* err = std::get_if<std::string>(&reply)) {
    std::fprintf(stderr, "dpgatectl: %s\n", err->c_str());
    return 1;
  }
  const auto& r = std::get<dpgate::control::Reply>(reply);
  std::fputs(r.text.c_str(), r.ok ? stdout : stderr);
  return r.ok ? 0 : 1;
}

std::string join(const std::string& command, const Args& args) {
  std::string line = command;
  for (const auto& a : args) {
    if (a.find_first_of(" \t\n") != std::string::npos) return "";
    line += " " + a;
  }
  return line;
}

int cmd_apply(const Args& args) {
  Args options;
  std::string file;
  for (const auto& a : args) {
    if (a == "--noflush" || a == "--test") {
      options.push_back(a);
    } else if (file.empty()) {
      file = a;
    } else {
      std::fprintf(stderr, "usage: dpgatectl apply [--noflush] [--test] FILE|-\n");
      return 2;
    }
  }
  if (file.empty()) file = "-";
  std::string text;
  if (file == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else if (!read_file(file, text)) {
    std::fprintf(stderr, "dpgatectl: cannot read %s\n", file.c_str());
    return 1;
  }
  std::string source = file == "-" ? "<stdin>" : file;
  for (char& c : source) {
    if (c == ' ' || c == '\t') c = '_';
  }
  options.push_back("--source=" + source);
  return remote(join("apply", options), text.empty() ? std::string("\n") : text);
}

// Asks the running dpgate for its rules and its own addresses, then walks the
// described packet through them as `simulate` does: the path on live rules.
int cmd_trace(const Args& args) {
  if (args.empty()) {
    std::fprintf(stderr, "usage: dpgatectl trace 'tcp A:P -> B:P in IF [out IF]' [--ctstate S] [--mark N] [--seed N]\n");
    return 2;
  }
  auto saved = dpgate::control::call(g_socket, "save");
  auto routes = dpgate::control::call(g_socket, "route");
  for (auto* r : {&saved, &routes}) {
    if (auto* err = std::get_if<std::string>(r)) {
      std::fprintf(stderr, "dpgatectl: %s\n", err->c_str());
      return 1;
    }
  }
  char path[] = "/tmp/dpgatectl-trace-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    std::perror("dpgatectl: mkstemp");
    return 1;
  }
  const std::string& text = std::get<dpgate::control::Reply>(saved).text;
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  Args sim = {path};
  sim.insert(sim.end(), args.begin(), args.end());
  std::istringstream lines(std::get<dpgate::control::Reply>(routes).text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("local ", 0) == 0) {  // "local A/32 dev P": dpgate's own address
      const std::string addr = line.substr(6, line.find('/') - 6);
      sim.push_back("--local");
      sim.push_back(addr);
    }
  }
  std::printf("rules: the running dpgate's (%zu bytes of iptables-save text)\n", text.size());
  const int rc = written ? cmd_simulate(sim) : 1;
  unlink(path);
  return rc;
}

// A command forwarded as it is: the daemon validates its arguments.
Subcommand passthrough(const char* name, const char* usage) {
  return {name, usage, [name](const Args& args) {
            const std::string line = join(name, args);
            if (line.empty()) {
              std::fprintf(stderr, "dpgatectl: arguments may not contain spaces\n");
              return 2;
            }
            return remote(line);
          }};
}

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> table = {
      {"check", "check [--save] FILE [FILE...]   parse + compile; --save prints iptables-save text",
       cmd_check},
      {"simulate", "simulate FILE 'tcp A:P -> B:P in IF' [--local A] [--ctstate S] [--mark N] [--from-local]",
       cmd_simulate},
      {"apply", "apply [--noflush] [--test] FILE|-      load rules into the running dpgate (iptables-restore)",
       cmd_apply},
      passthrough("save", "save [-t TABLE] [-c]                 the running rules as iptables-save text"),
      {"trace", "trace 'tcp A:P -> B:P in IF' [opts]  a packet's path through the running rules (simulate on live rules)",
       cmd_trace},
      passthrough("list", "list [-t TABLE] [CHAIN] [-v] [-n] [-x]   rules and counters as iptables -L -v -n"),
      passthrough("zero", "zero                                 reset rule counters"),
      passthrough("conntrack", "conntrack -L|-C|-D|-F [filters]      flows, as the conntrack tool (-p, -s, -d, -r, -q, --sport, --dport, --dst-nat, --src-nat, -m)"),
      passthrough("stats", "stats                                per-port and per-worker counters"),
      passthrough("neigh", "neigh                                the neighbour (ARP) table"),
      passthrough("route", "route                                the forwarding table"),
      passthrough("metrics", "metrics                              counters in Prometheus text format"),
      passthrough("generation", "generation                           the running rules' generation"),
  };
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  Args args(argv + 1, argv + argc);
  if (const char* env = std::getenv("DPGATE_SOCKET")) g_socket = env;
  if (args.size() >= 2 && (args[0] == "-s" || args[0] == "--socket")) {
    g_socket = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (!args.empty()) {
    for (const auto& sc : subcommands()) {
      if (args[0] == sc.name) return sc.run(Args(args.begin() + 1, args.end()));
    }
  }
  std::fprintf(stderr, "usage: dpgatectl [-s SOCKET] COMMAND ...   (socket: $DPGATE_SOCKET or /run/dpgate/dpgate.sock)\n");
  for (const auto& sc : subcommands()) std::fprintf(stderr, "  dpgatectl %s\n", sc.usage);
  return 2;
}
