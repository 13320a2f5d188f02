#include "dpgate/control/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "dpgate/net/addr.hpp"

namespace dpgate::control {

namespace {

constexpr uint64_t kIdleTimeoutMs = 10000;
constexpr size_t kReadChunk = 65536;

std::string errno_text() { return std::strerror(errno); }

bool set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

std::string frame_reply(const Reply& r) {
  return std::string(r.ok ? "ok " : "error ") + std::to_string(r.text.size()) + "\n" + r.text;
}

}  // namespace

struct ControlServer::Client {
  int fd = -1;
  std::string in;
  std::string out;
  bool have_header = false;
  RequestHeader header;
  bool close_after_write = false;
  uint64_t last_activity_ms = 0;
  ~Client() {
    if (fd >= 0) ::close(fd);
  }
};

std::variant<RequestHeader, std::string> parse_request_line(const std::string& line) {
  RequestHeader h;
  std::istringstream words(line);
  std::string w;
  while (words >> w) {
    if (h.command.empty()) {
      h.command = w;
    } else {
      h.args.push_back(w);
    }
  }
  if (h.command.empty()) return std::string("empty request");
  for (char c : line) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return std::string("control character in request");
  }
  if (!h.args.empty() && h.args.back().rfind("body=", 0) == 0) {
    const std::string& n = h.args.back();
    size_t len = 0;
    auto [ptr, ec] = std::from_chars(n.data() + 5, n.data() + n.size(), len);
    if (ec != std::errc{} || ptr != n.data() + n.size() || n.size() == 5) return "malformed '" + n + "'";
    if (len > kMaxRequestBody) return "body of " + std::to_string(len) + " bytes exceeds the limit of " +
                                      std::to_string(kMaxRequestBody);
    h.body_len = len;
    h.args.pop_back();
  }
  return h;
}

ControlServer::ControlServer(int fd, Protocol protocol, std::string where)
    : listen_fd_(fd), protocol_(protocol), where_(std::move(where)) {}

ControlServer::~ControlServer() {
  clients_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
}

std::variant<std::unique_ptr<ControlServer>, std::string> ControlServer::listen_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path) return "control socket path '" + path + "' is empty or too long";
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec) return "cannot create " + dir.string() + ": " + ec.message();
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text();
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  // A socket file left by a crashed dpgate is replaced; a live one is refused.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    ::close(fd);
    return "control socket " + path + " is in use by a running dpgate";
  }
  ::unlink(path.c_str());
  const mode_t old_mask = ::umask(0177);  // the socket is created 0600
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_mask);
  if (rc != 0 || ::listen(fd, 16) != 0 || !set_nonblocking(fd)) {
    const std::string why = errno_text();
    ::close(fd);
    return "cannot listen on " + path + ": " + why;
  }
  std::unique_ptr<ControlServer> s(new ControlServer(fd, Protocol::kControl, path));
  s->unlink_path_ = path;
  s->on("help", "list the commands", [srv = s.get()](const Request&) {
    std::string text;
    for (const auto& [name, entry] : srv->handlers_) text += name + "\t" + entry.first + "\n";
    return Reply{true, text};
  });
  return s;
}

std::variant<std::unique_ptr<ControlServer>, std::string> ControlServer::listen_metrics(
    const std::string& address_port, std::function<std::string()> render) {
  const size_t colon = address_port.rfind(':');
  if (colon == std::string::npos) return "metrics address '" + address_port + "' is not ADDRESS:PORT";
  auto ip = net::parse_ipv4(address_port.substr(0, colon));
  int port = 0;
  const std::string port_text = address_port.substr(colon + 1);
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (!ip || ec != std::errc{} || ptr != port_text.data() + port_text.size() || port <= 0 || port > 65535) {
    return "metrics address '" + address_port + "' is not IPV4:PORT";
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text();
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(*ip);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0 ||
      !set_nonblocking(fd)) {
    const std::string why = errno_text();
    ::close(fd);
    return "cannot listen on " + address_port + ": " + why;
  }
  std::unique_ptr<ControlServer> s(new ControlServer(fd, Protocol::kHttpMetrics, address_port));
  s->render_ = std::move(render);
  return s;
}

void ControlServer::on(const std::string& command, const std::string& help, Handler handler) {
  handlers_[command] = {help, std::move(handler)};
}

Reply ControlServer::dispatch(const RequestHeader& header, std::string body) {
  ++requests_;
  auto it = handlers_.find(header.command);
  if (it == handlers_.end()) {
    ++errors_;
    return Reply::error("unknown command '" + header.command + "' (try 'help')\n");
  }
  Reply r = it->second.second(Request{header.command, header.args, std::move(body)});
  if (!r.ok) ++errors_;
  return r;
}

void ControlServer::handle_input(Client& c) {
  if (protocol_ == Protocol::kHttpMetrics) {
    const size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.in.size() > kMaxRequestLine) c.close_after_write = true;
      return;
    }
    const bool get_metrics = c.in.rfind("GET /metrics ", 0) == 0;
    ++requests_;
    const std::string body = get_metrics ? render_() : "not found; try /metrics\n";
    c.out = std::string(get_metrics ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.0 404 Not Found\r\n") +
            "Content-Type: text/plain; version=0.0.4\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\nConnection: close\r\n\r\n" + body;
    c.in.clear();
    c.close_after_write = true;
    return;
  }
  for (;;) {
    if (!c.have_header) {
      const size_t nl = c.in.find('\n');
      // The limit holds however the line was split into reads: one that
      // arrived whole with its newline is refused like one still arriving.
      if ((nl == std::string::npos ? c.in.size() : nl) > kMaxRequestLine) {
        ++errors_;
        c.out += frame_reply(Reply::error("request line longer than " + std::to_string(kMaxRequestLine) + " bytes\n"));
        c.close_after_write = true;
        return;
      }
      if (nl == std::string::npos) return;
      auto parsed = parse_request_line(c.in.substr(0, nl));
      c.in.erase(0, nl + 1);
      if (auto* err = std::get_if<std::string>(&parsed)) {
        ++errors_;
        c.out += frame_reply(Reply::error(*err + "\n"));
        c.close_after_write = true;
        return;
      }
      c.header = std::get<RequestHeader>(parsed);
      c.have_header = true;
    }
    if (c.in.size() < c.header.body_len) return;
    std::string body = c.in.substr(0, c.header.body_len);
    c.in.erase(0, c.header.body_len);
    c.have_header = false;
    c.out += frame_reply(dispatch(c.header, std::move(body)));
  }
}

void ControlServer::poll(uint64_t now_ms) {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    if (clients_.size() >= kMaxClients) {
      ::close(fd);
      ++errors_;
      continue;
    }
    auto c = std::make_unique<Client>();
    c->fd = fd;
    c->last_activity_ms = now_ms;
    clients_.push_back(std::move(c));
  }
  for (auto& cp : clients_) {
    Client& c = *cp;
    char buf[kReadChunk];
    bool eof = false;
    for (;;) {
      const ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        c.last_activity_ms = now_ms;
        if (c.in.size() > kMaxRequestLine + kMaxRequestBody) break;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
      break;
    }
    if (!c.close_after_write) handle_input(c);
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      c.out.erase(0, static_cast<size_t>(n));
      c.last_activity_ms = now_ms;
    }
    const bool idle = now_ms - c.last_activity_ms > kIdleTimeoutMs;
    if ((eof && c.out.empty()) || (c.close_after_write && c.out.empty()) || idle) {
      ::close(c.fd);
      c.fd = -1;
    }
  }
  std::erase_if(clients_, [](const std::unique_ptr<Client>& c) { return c->fd < 0; });
}

std::variant<Reply, std::string> call(const std::string& socket_path, const std::string& line,
                                      const std::string& body) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) return std::string("socket path too long");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text();
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    return "cannot connect to " + socket_path + ": " + why + " (is dpgate running?)";
  }
  std::string request = line;
  if (!body.empty()) request += " body=" + std::to_string(body.size());
  request += "\n" + body;
  for (size_t off = 0; off < request.size();) {
    const ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return "send: " + errno_text();
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    const size_t nl = in.find('\n');
    if (nl != std::string::npos) {
      const size_t space = in.find(' ');
      size_t len = 0;
      if (space < nl) std::from_chars(in.data() + space + 1, in.data() + nl, len);
      if (in.size() >= nl + 1 + len) break;
    }
  }
  ::close(fd);
  const size_t nl = in.find('\n');
  const size_t space = in.find(' ');
  if (nl == std::string::npos || space > nl) return std::string("malformed reply from dpgate");
  const std::string status = in.substr(0, space);
  if (status != "ok" && status != "error") return std::string("malformed reply from dpgate");
  return Reply{status == "ok", in.substr(nl + 1)};
}

}  // namespace dpgate::control
