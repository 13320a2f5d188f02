// The control socket and the metrics endpoint: non-blocking listeners the
// control thread polls between its other duties, so a slow or malicious
// client can never stall it (and workers never see it at all).
// Control thread only.
//
// Control protocol (UNIX stream socket, mode 0600), documented in README:
//   request:  one line "COMMAND [ARG ...]\n" (at most 4096 bytes); when the
//             last word is "body=N", exactly N more bytes follow (at most 64 MiB)
//   reply:    "ok N\n" or "error N\n", then N bytes of text
// Metrics: HTTP/1.0 "GET /metrics" on a TCP address, Prometheus text format.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace dpgate::control {

struct Request {
  std::string command;
  std::vector<std::string> args;
  std::string body;
};

struct Reply {
  bool ok = true;
  std::string text;
  static Reply error(std::string why) { return {false, std::move(why)}; }
};

using Handler = std::function<Reply(const Request&)>;

// Parses one request header line (without its newline) into command, args
// and the announced body length. Errors are text. Any thread.
struct RequestHeader {
  std::string command;
  std::vector<std::string> args;
  size_t body_len = 0;
};
std::variant<RequestHeader, std::string> parse_request_line(const std::string& line);

inline constexpr size_t kMaxRequestLine = 4096;
inline constexpr size_t kMaxRequestBody = 64u << 20;
inline constexpr size_t kMaxClients = 16;

class ControlServer {
 public:
  enum class Protocol { kControl, kHttpMetrics };

  // A UNIX socket at `path` (its directory is created; a stale socket file
  // is replaced), or for kHttpMetrics a TCP "ADDRESS:PORT".
  static std::variant<std::unique_ptr<ControlServer>, std::string> listen_unix(const std::string& path);
  static std::variant<std::unique_ptr<ControlServer>, std::string> listen_metrics(
      const std::string& address_port, std::function<std::string()> render);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  void on(const std::string& command, const std::string& help, Handler handler);

  // Accepts, reads, dispatches complete requests, writes replies; returns at
  // once when nothing is ready. `now_ms` drives idle-client timeouts.
  void poll(uint64_t now_ms);

  uint64_t requests() const { return requests_; }
  uint64_t errors() const { return errors_; }
  const std::string& where() const { return where_; }

 private:
  struct Client;
  ControlServer(int fd, Protocol protocol, std::string where);
  void handle_input(Client& c);
  Reply dispatch(const RequestHeader& header, std::string body);

  int listen_fd_ = -1;
  Protocol protocol_;
  std::string where_;
  std::string unlink_path_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::map<std::string, std::pair<std::string, Handler>> handlers_;
  std::function<std::string()> render_;
  uint64_t requests_ = 0;
  uint64_t errors_ = 0;
};

// Client side (dpgatectl): one request, one reply. Errors (cannot connect,
// malformed reply) are text.
std::variant<Reply, std::string> call(const std::string& socket_path, const std::string& line,
                                      const std::string& body = "");

}  // namespace dpgate::control
