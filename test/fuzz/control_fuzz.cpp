// The control socket with the daemon's real commands (register_commands) on
// a Runtime over ring_router.hpp's two net_ring ports, its worker running on
// lcore 1 so conntrack requests are answered and old rule generations freed
// as in dpgate. Each fuzz input is what a few clients write to the socket;
// the harness polls the server as the control loop does and checks:
//   - every complete request gets exactly one reply, in order, framed
//     "ok N\n" or "error N\n" and exactly N bytes of whole lines; a request
//     line that is too long or malformed gets one error and the connection
//     is closed; nothing else is ever written;
//   - once a client has sent everything and shut down its side, the server
//     finishes the replies and closes within a bounded number of polls;
//   - the rules move only by successful applies: the generation rises by
//     exactly their number, the replies name each new generation once, a
//     `generation` reply names one that was running, and without a
//     successful apply the running rules are the same text as before;
//   - the server's request and error counts match the replies;
//   - every kHelpEvery inputs a fresh client's `help` lists every command.
// Between inputs the base rule set and its two flows are put back, so each
// input runs from the same state.
//
// CONTROL_FUZZ_TRACE=1 in the environment prints every exchange (to see
// what an input does: control_fuzz FILE).
//
// Input format: 0x1D separates clients (at most kMaxClientsPerInput, all
// connected at once, replies checked per client); 0x1E separates one
// client's writes, and the server is polled once after each round of writes,
// so request lines and bodies arrive in pieces. The seeds (corpus/control/)
// are plain text.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dpgate/control/commands.hpp"
#include "dpgate/control/runtime.hpp"
#include "dpgate/control/server.hpp"
#include "dpgate/net/builder.hpp"
#include "invariant.hpp"
#include "ring_router.hpp"

using namespace dpgate;
using fuzz::invariant;

namespace {

constexpr char kClientSeparator = 0x1d;
constexpr char kWriteSeparator = 0x1e;
constexpr size_t kMaxClientsPerInput = 4;
constexpr size_t kMaxWrites = 64;
// Polls without a new reply byte before a client that has finished sending
// must have been answered and closed.
constexpr int kMaxIdlePolls = 8;
constexpr uint64_t kHelpEvery = 8;

// What dpgate runs between inputs: a DNAT, a masquerade, a stateful forward
// policy; enough for list -t nat, save -c, conntrack --src-nat to show something.
constexpr const char* kBaseRules = R"(*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 198.18.2.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.1.2:80
-A POSTROUTING -o wan -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan -o wan -j ACCEPT
COMMIT
)";

constexpr const char* kCommands[] = {"apply", "conntrack", "generation", "help",  "list", "metrics",
                                     "neigh", "route",     "save",       "stats", "zero"};

struct Harness {
  fuzz::RingPorts rings;
  std::unique_ptr<control::Runtime> runtime;
  std::unique_ptr<control::ControlServer> server;
  std::filesystem::path dir;
  std::string socket_path;
  uint64_t now_ms = 0;
  uint64_t base_generation = 0;
  bool flows_touched = true;  // a conntrack request ran: put the flows back
  uint64_t inputs = 0;
  bool trace = false;  // CONTROL_FUZZ_TRACE set: print every exchange
};

Harness* g_harness = nullptr;

[[noreturn]] void setup_failed(const std::string& why) {
  std::fprintf(stderr, "control_fuzz: setup: %s\n", why.c_str());
  std::exit(1);
}

void poll_server(Harness& h) {
  h.server->poll(++h.now_ms);
  h.runtime->service(rte_rdtsc());
}

uint64_t generation(control::Runtime& rt) {
  const auto* current = rt.rules().current();
  return current ? current->generation : 0;
}

void apply_base_rules(Harness& h) {
  auto applied = h.runtime->rules().apply(kBaseRules, "control_fuzz.cpp", false, false);
  if (auto* err = std::get_if<std::string>(&applied)) setup_failed("base rules: " + *err);
  h.base_generation = std::get<control::ApplyResult>(applied).generation;
}

uint64_t flow_count(control::Runtime& rt) {
  auto n = rt.flows(dataplane::FlowRequest::Op::kList, {}, [](const conntrack::FlowInfo&) {});
  return std::holds_alternative<uint64_t>(n) ? std::get<uint64_t>(n) : 0;
}

void drain_tx(Harness& h) {
  for (rte_ring* ring : h.rings.tx) {
    void* m;
    while (rte_ring_dequeue(ring, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  }
}

// A TCP and a UDP flow from lan to wan, masqueraded: what conntrack -L, -D
// and their filters work on. Waits until the worker has them.
void put_flows_back(Harness& h) {
  control::Runtime& rt = *h.runtime;
  const net::MacAddr lan_mac = rt.router().ports[fuzz::kLan].mac;
  const std::vector<std::vector<uint8_t>> frames = {
      net::PacketBuilder()
          .eth(fuzz::kClientMac, lan_mac)
          .ipv4("198.18.1.2", "198.19.0.10")
          .tcp(40000, 80)
          .build(),
      net::PacketBuilder()
          .eth(fuzz::kClientMac, lan_mac)
          .ipv4("198.18.1.2", "198.19.0.10")
          .udp(5353, 53)
          .build(),
  };
  for (const auto& f : frames) {
    rte_mbuf* m = rte_pktmbuf_alloc(rt.router().pool);
    if (m == nullptr) setup_failed("the mbuf pool is empty");
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    if (rte_ring_enqueue(h.rings.rx[fuzz::kLan], m) != 0) setup_failed("the lan RX ring is full");
  }
  // Each count is a round trip through the worker's mailbox, served after
  // its RX: within two the frames have been tracked.
  int tries = 0;
  while (flow_count(rt) < frames.size()) {
    if (++tries == 10) setup_failed("the worker does not track the flows it was sent");
  }
  drain_tx(h);
  h.flows_touched = false;
}

void stop_worker() {
  Harness& h = *g_harness;
  h.runtime->router().stop.store(true);
  rte_eal_mp_wait_lcore();
  h.server.reset();
  std::error_code ec;
  std::filesystem::remove_all(h.dir, ec);
}

void set_up() {
  std::array<const char*, 8> eal_args = {
      "control_fuzz", "--no-huge",           "--no-pci", "-m", "256",
      "--no-shconf",  "--log-level=*:error", "-l0-1"};
  if (rte_eal_init(static_cast<int>(eal_args.size()), const_cast<char**>(eal_args.data())) < 0) {
    setup_failed("rte_eal_init failed");
  }
  auto* h = new Harness;
  if (auto err = fuzz::open_ring_ports(h->rings)) setup_failed(*err);
  // An idle worker sleeps: the fuzzer shares the machine with it. A small
  // flow table: a conntrack request walks all of it, a page per round trip.
  const std::string config_text = std::string(fuzz::kRingRouterConfig) +
                                  "idle_sleep_us = 20;\nconntrack = { max_flows = 4096; };\n";
  auto cfg = control::load_config_text(config_text, "ring_router.hpp");
  if (auto* e = std::get_if<control::ConfigError>(&cfg)) setup_failed(e->to_string());
  auto rt = control::Runtime::create(std::get<control::Config>(cfg));
  if (auto* e = std::get_if<std::string>(&rt)) setup_failed(*e);
  h->runtime = std::move(std::get<std::unique_ptr<control::Runtime>>(rt));

  char dir[] = "/tmp/dpgate-control-fuzz-XXXXXX";
  if (::mkdtemp(dir) == nullptr) setup_failed(std::string("mkdtemp: ") + std::strerror(errno));
  h->dir = dir;
  h->socket_path = (h->dir / "control.sock").string();
  auto server = control::ControlServer::listen_unix(h->socket_path);
  if (auto* e = std::get_if<std::string>(&server)) setup_failed(*e);
  h->server = std::move(std::get<std::unique_ptr<control::ControlServer>>(server));
  control::register_commands(*h->server, *h->runtime);

  const unsigned lcore = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
  if (lcore >= RTE_MAX_LCORE) setup_failed("the EAL gave no worker lcore");
  dataplane::Worker& w = *h->runtime->workers()[0];
  w.lcore_id = lcore;
  if (rte_eal_remote_launch(dataplane::worker_main, &w, lcore) != 0)
    setup_failed("cannot launch the worker");
  h->trace = std::getenv("CONTROL_FUZZ_TRACE") != nullptr;
  g_harness = h;
  std::atexit(stop_worker);
  apply_base_rules(*h);
}

// Back to the state after set-up, so an input reproduces alone.
void reset(Harness& h) {
  if (generation(*h.runtime) != h.base_generation) apply_base_rules(h);
  if (h.flows_touched) put_flows_back(h);
  drain_tx(h);
}

// One reply the server owes a client, as predicted from the bytes it sent.
struct Expected {
  bool protocol_error = false;  // an error for the request line, then the connection closes
  std::string command;          // else the request dispatched
};

// What the server must answer to `stream`, read as the protocol in
// server.hpp defines it: whatever way the bytes are split into reads.
std::vector<Expected> expected_replies(std::string_view stream) {
  std::vector<Expected> out;
  size_t pos = 0;
  for (;;) {
    const size_t nl = stream.find('\n', pos);
    const size_t line_len = (nl == std::string_view::npos ? stream.size() : nl) - pos;
    if (line_len > control::kMaxRequestLine) {
      out.push_back({true, ""});
      return out;
    }
    if (nl == std::string_view::npos) return out;
    auto parsed = control::parse_request_line(std::string(stream.substr(pos, line_len)));
    if (std::holds_alternative<std::string>(parsed)) {
      out.push_back({true, ""});
      return out;
    }
    const auto& header = std::get<control::RequestHeader>(parsed);
    pos = nl + 1;
    if (stream.size() - pos < header.body_len) return out;
    pos += header.body_len;
    out.push_back({false, header.command});
  }
}

struct Client {
  int fd = -1;
  std::vector<std::string_view> writes;
  std::string sent;      // the bytes the socket accepted
  std::string received;  // everything the server wrote
  bool send_failed = false;
  bool closed = false;  // the server closed its end
};

int connect_client(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  invariant(fd >= 0, "the harness has a socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  invariant(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0,
            "the control socket accepts a connection");
  return fd;
}

// Reads what is there; returns whether anything new came.
bool read_replies(Client& c) {
  bool progress = false;
  char buf[65536];
  while (!c.closed) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      c.received.append(buf, static_cast<size_t>(n));
      progress = true;
    } else if (n == 0 || errno == ECONNRESET) {
      c.closed = true;  // ECONNRESET: closed with bytes of ours unread
      progress = true;
    } else {
      invariant(errno == EAGAIN || errno == EWOULDBLOCK,
                "reading the control socket fails only by EAGAIN");
      break;
    }
  }
  return progress;
}

void send_write(Client& c, std::string_view bytes) {
  size_t off = 0;
  while (!c.send_failed && off < bytes.size()) {
    const ssize_t n =
        ::send(c.fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.sent.append(bytes.data() + off, static_cast<size_t>(n));
      off += static_cast<size_t>(n);
    } else {
      // The server closed after an error (EPIPE), or its buffer is full:
      // what was not sent is not part of the stream it is judged on.
      c.send_failed = true;
    }
  }
}

std::vector<std::string_view> split(std::string_view text, char separator, size_t max_parts) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (parts.size() + 1 < max_parts) {
    const size_t at = text.find(separator, pos);
    if (at == std::string_view::npos) break;
    parts.push_back(text.substr(pos, at - pos));
    pos = at + 1;
  }
  parts.push_back(text.substr(pos));
  return parts;
}

// Connects the clients, writes their parts round by round with a poll after
// each round, shuts their sending side and polls until the server has
// closed every one. Returns them with what they received.
std::vector<Client> run_clients(Harness& h, const std::vector<std::string_view>& streams) {
  std::vector<Client> clients(streams.size());
  size_t rounds = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    clients[i].fd = connect_client(h.socket_path);
    clients[i].writes = split(streams[i], kWriteSeparator, kMaxWrites);
    rounds = std::max(rounds, clients[i].writes.size());
  }
  for (size_t r = 0; r < rounds; ++r) {
    for (auto& c : clients) {
      if (r < c.writes.size()) send_write(c, c.writes[r]);
    }
    poll_server(h);
    for (auto& c : clients) read_replies(c);
  }
  for (auto& c : clients) ::shutdown(c.fd, SHUT_WR);
  int idle = 0;
  for (;;) {
    const bool all_closed =
        std::all_of(clients.begin(), clients.end(), [](const Client& c) { return c.closed; });
    if (all_closed) break;
    invariant(idle < kMaxIdlePolls,
              "the server answers and closes a client that has finished sending");
    poll_server(h);
    bool progress = false;
    for (auto& c : clients) progress |= read_replies(c);
    idle = progress ? 0 : idle + 1;
  }
  for (auto& c : clients) ::close(c.fd);
  return clients;
}

// For a broken invariant's report: the bytes, printable, runs of one byte
// shortened, at most `max` characters.
std::string printable(std::string_view bytes, size_t max = 2000) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && out.size() < max;) {
    size_t run = 1;
    while (i + run < bytes.size() && bytes[i + run] == bytes[i]) ++run;
    const auto c = static_cast<unsigned char>(bytes[i]);
    char one[8];
    if (c == '\n')
      std::snprintf(one, sizeof one, "\\n");
    else if (c < 0x20 || c >= 0x7f || c == '\\')
      std::snprintf(one, sizeof one, "\\x%02x", c);
    else
      std::snprintf(one, sizeof one, "%c", c);
    if (run > 8) {
      out += std::string(one) + "<x" + std::to_string(run) + ">";
    } else {
      for (size_t k = 0; k < run; ++k) out += one;
    }
    i += run;
  }
  return out;
}

void print_exchange(const Client& c) {
  std::fprintf(stderr, "control_fuzz: client sent:     %s\ncontrol_fuzz: client received: %s\n",
               printable(c.sent).c_str(), printable(c.received).c_str());
}

// invariant(), telling first what the client sent and received.
void client_invariant(bool holds, const char* what, const Client& c) {
  if (!holds) print_exchange(c);
  invariant(holds, what);
}

struct Frame {
  bool ok;
  std::string text;
};

// Splits what the server wrote into frames; every byte must belong to a
// complete "ok N\n" / "error N\n" + N bytes frame.
std::vector<Frame> parse_replies(const Client& c) {
  const std::string& in = c.received;
  std::vector<Frame> out;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t nl = in.find('\n', pos);
    client_invariant(nl != std::string::npos, "a reply header ends with a newline", c);
    const std::string_view header(in.data() + pos, nl - pos);
    const bool ok = header.rfind("ok ", 0) == 0;
    client_invariant(ok || header.rfind("error ", 0) == 0, "a reply starts with 'ok ' or 'error '",
                     c);
    const std::string_view digits = header.substr(ok ? 3 : 6);
    size_t len = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    client_invariant(ec == std::errc{} && end == digits.data() + digits.size(),
                     "a reply header is 'ok N' or 'error N' with N in decimal", c);
    pos = nl + 1;
    client_invariant(in.size() - pos >= len,
                     "a reply carries exactly the N bytes its header announces", c);
    out.push_back({ok, in.substr(pos, len)});
    pos += len;
  }
  return out;
}

uint64_t number_after(const std::string& text, std::string_view prefix) {
  invariant(text.rfind(prefix, 0) == 0, "an apply reply names the generation");
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data() + prefix.size(), text.data() + text.size(), n);
  invariant(ec == std::errc{} && end != text.data() + text.size() && *end == ':',
            "an apply reply says 'generation N:'");
  return n;
}

void check_help(Harness& h) {
  const std::vector<std::string_view> help = {"help\n"};
  auto clients = run_clients(h, help);
  auto replies = parse_replies(clients[0]);
  invariant(replies.size() == 1 && replies[0].ok, "a fresh client's help is answered with ok");
  for (const char* command : kCommands) {
    invariant(replies[0].text.find(std::string(command) + "\t") != std::string::npos,
              "help lists every command");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_up();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = *g_harness;
  control::Runtime& rt = *h.runtime;
  reset(h);
  const uint64_t generation_before = generation(rt);
  const std::string rules_before = rt.rules().save(false);
  const uint64_t requests_before = h.server->requests();
  const uint64_t errors_before = h.server->errors();

  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto clients = run_clients(h, split(input, kClientSeparator, kMaxClientsPerInput));

  const uint64_t generation_after = generation(rt);
  uint64_t dispatched = 0, error_replies = 0;
  std::set<uint64_t> applied;
  for (const auto& c : clients) {
    if (h.trace) print_exchange(c);
    const auto expected = expected_replies(c.sent);
    const auto replies = parse_replies(c);
    client_invariant(replies.size() == expected.size(), "one reply per complete request, no more",
                     c);
    for (size_t i = 0; i < replies.size(); ++i) {
      const Expected& e = expected[i];
      const Frame& r = replies[i];
      error_replies += r.ok ? 0 : 1;
      client_invariant(r.text.empty() || r.text.back() == '\n', "a reply's text is whole lines", c);
      if (e.protocol_error) {
        client_invariant(!r.ok, "a malformed or oversized request line gets an error", c);
        continue;
      }
      ++dispatched;
      const bool known =
          std::find_if(std::begin(kCommands), std::end(kCommands),
                       [&](const char* name) { return e.command == name; }) != std::end(kCommands);
      if (!known) {
        client_invariant(!r.ok && r.text.rfind("unknown command '", 0) == 0,
                         "an unknown command gets an error", c);
        continue;
      }
      if (e.command == "conntrack") h.flows_touched = true;
      if (e.command == "help" || e.command == "generation")
        client_invariant(r.ok, "help and generation always succeed", c);
      if (e.command == "generation") {
        const uint64_t g = std::strtoull(r.text.c_str(), nullptr, 10);
        client_invariant(
            r.text == std::to_string(g) + "\n" && g >= generation_before && g <= generation_after,
            "generation names a generation that was running", c);
      }
      if (e.command == "apply" && r.ok && r.text.rfind("test only", 0) != 0) {
        const uint64_t g = number_after(r.text, "generation ");
        invariant(applied.insert(g).second, "each successful apply makes a new generation");
        invariant(g > generation_before && g <= generation_after,
                  "an apply's generation is the one it made");
      }
    }
  }
  invariant(generation_after - generation_before == applied.size(),
            "the generation rises by exactly the number of successful applies");
  if (applied.empty())
    invariant(rt.rules().save(false) == rules_before, "failed applies leave the running rules");
  invariant(h.server->requests() - requests_before == dispatched,
            "the server counts each dispatched request");
  invariant(h.server->errors() - errors_before == error_replies,
            "the server counts each error reply");

  if (++h.inputs % kHelpEvery == 0) check_help(h);
  return 0;
}
