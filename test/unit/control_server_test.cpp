// The control socket: framing, validation, and that a bad or slow client
// never gets more than an error reply.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <string>

#include "dpgate/control/server.hpp"

using namespace dpgate::control;

namespace {

std::string temp_socket() {
  static int n = 0;
  return "/tmp/dpgate-test-" + std::to_string(getpid()) + "-" + std::to_string(n++) + ".sock";
}

std::unique_ptr<ControlServer> make_server(const std::string& path) {
  auto s = ControlServer::listen_unix(path);
  if (auto* e = std::get_if<std::string>(&s)) FAIL(*e);
  auto server = std::move(std::get<std::unique_ptr<ControlServer>>(s));
  server->on("echo", "echo args and body", [](const Request& r) {
    std::string text;
    for (const auto& a : r.args) text += a + ",";
    return Reply{true, text + "|" + r.body};
  });
  server->on("fail", "always fails", [](const Request&) { return Reply::error("nope\n"); });
  return server;
}

// Runs `client` on another thread while this one polls the server.
template <typename F>
auto with_server(ControlServer& server, F client) {
  auto result = std::async(std::launch::async, client);
  uint64_t ms = 0;
  while (result.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) server.poll(++ms);
  return result.get();
}

// Sends raw bytes, returns everything the server answers before closing.
std::string raw_exchange(const std::string& path, const std::string& bytes) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "connect failed";
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace

TEST_CASE("request lines split into command, args and an announced body") {
  auto h = std::get<RequestHeader>(parse_request_line("apply --noflush body=12"));
  CHECK(h.command == "apply");
  CHECK(h.args == std::vector<std::string>{"--noflush"});
  CHECK(h.body_len == 12);
  CHECK(std::holds_alternative<std::string>(parse_request_line("   ")));
  CHECK(std::holds_alternative<std::string>(parse_request_line("apply body=12x")));
  CHECK(std::holds_alternative<std::string>(parse_request_line("apply body=")));
  CHECK(std::holds_alternative<std::string>(parse_request_line("apply body=999999999999")));
  CHECK(std::holds_alternative<std::string>(parse_request_line(std::string("st\x01" "ats"))));
}

TEST_CASE("a request with a body gets its reply, and the socket is private") {
  const std::string path = temp_socket();
  auto server = make_server(path);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto reply = with_server(*server, [&] { return call(path, "echo a b", "hello\nworld"); });
  REQUIRE(std::holds_alternative<Reply>(reply));
  CHECK(std::get<Reply>(reply).ok);
  CHECK(std::get<Reply>(reply).text == "a,b,|hello\nworld");
}

TEST_CASE("unknown commands and handler errors are error replies") {
  const std::string path = temp_socket();
  auto server = make_server(path);
  auto r1 = std::get<Reply>(with_server(*server, [&] { return call(path, "frobnicate"); }));
  CHECK_FALSE(r1.ok);
  CHECK_THAT(r1.text, Catch::Contains("unknown command 'frobnicate'"));
  auto r2 = std::get<Reply>(with_server(*server, [&] { return call(path, "fail"); }));
  CHECK_FALSE(r2.ok);
  auto r3 = std::get<Reply>(with_server(*server, [&] { return call(path, "help"); }));
  CHECK_THAT(r3.text, Catch::Contains("echo\t"));
  CHECK(server->errors() == 2);
}

TEST_CASE("an oversize request line is refused and the connection closed") {
  const std::string path = temp_socket();
  auto server = make_server(path);
  const std::string out = with_server(*server, [&] { return raw_exchange(path, std::string(kMaxRequestLine + 10, 'a')); });
  CHECK_THAT(out, Catch::StartsWith("error ") && Catch::Contains("longer than"));
}

TEST_CASE("an oversize request line is refused even when it arrives whole with its newline") {
  const std::string path = temp_socket();
  auto server = make_server(path);
  const std::string arg(kMaxRequestLine - 5, 'a');  // "echo " + arg: the longest line allowed
  const std::string out = with_server(*server, [&] {
    return raw_exchange(path, "echo " + arg + "\necho " + arg + "a\necho after\n");
  });
  CHECK(out == "ok " + std::to_string(arg.size() + 2) + "\n" + arg + ",|" +
                   "error 36\nrequest line longer than 4096 bytes\n");
  CHECK(server->requests() == 1);
}

TEST_CASE("two requests in one write get two replies in order") {
  const std::string path = temp_socket();
  auto server = make_server(path);
  const std::string out = with_server(*server, [&] { return raw_exchange(path, "echo 1\necho 2 body=3\nxyz"); });
  CHECK(out == "ok 3\n1,|ok 6\n2,|xyz");
}

TEST_CASE("a second server on a live socket is refused; a stale socket file is replaced") {
  const std::string path = temp_socket();
  {
    auto server = make_server(path);
    auto second = ControlServer::listen_unix(path);
    REQUIRE(std::holds_alternative<std::string>(second));
    CHECK_THAT(std::get<std::string>(second), Catch::Contains("in use"));
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);  // leave a stale file behind
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
  auto again = ControlServer::listen_unix(path);
  CHECK(std::holds_alternative<std::unique_ptr<ControlServer>>(again));
}

TEST_CASE("the client reports a missing daemon clearly") {
  auto r = call("/tmp/dpgate-no-such.sock", "stats");
  REQUIRE(std::holds_alternative<std::string>(r));
  CHECK_THAT(std::get<std::string>(r), Catch::Contains("is dpgate running?"));
}
