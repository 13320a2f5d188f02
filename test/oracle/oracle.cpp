// Runs the real iptables tools in a throw-away namespace (see oracle.hpp).
#include "oracle.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace dpgate::oracle {
namespace {

std::atomic<int> g_counter{0};

// Runs a shell command, returns its exit status; stdout into `out`.
int run(const std::string& cmd, std::string* out) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  std::string text;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int status = pclose(p);
  if (out) *out = std::move(text);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string temp_path(const std::string& ns, const char* what) {
  return "/tmp/" + ns + "-" + what;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool oracle_available(std::string& why_not) {
  if (geteuid() != 0) {
    why_not = "not root";
    return false;
  }
  if (run("command -v iptables-restore >/dev/null && command -v ip >/dev/null", nullptr) != 0) {
    why_not = "iptables-restore or ip not installed";
    return false;
  }
  return true;
}

Netns::Netns() {
  name_ = "dpgate-oracle-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  ok_ = run("ip netns add " + name_ + " 2>/dev/null", nullptr) == 0;
}

Netns::~Netns() {
  if (ok_) run("ip netns del " + name_ + " 2>/dev/null", nullptr);
  std::remove(temp_path(name_, "in").c_str());
  std::remove(temp_path(name_, "err").c_str());
}

void Netns::add_nfacct(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    run("ip netns exec " + name_ + " nfacct add " + n + " >/dev/null 2>&1", nullptr);
  }
}

void Netns::reset(const std::vector<std::string>& nfacct) {
  // A fresh namespace is the only way to make tables disappear without nft.
  run("ip netns del " + name_ + " 2>/dev/null", nullptr);
  ok_ = run("ip netns add " + name_ + " 2>/dev/null", nullptr) == 0;
  add_nfacct(nfacct);
}

RealResult Netns::restore_and_save(const std::string& text, bool noflush, bool rule_counters) {
  RealResult r;
  const std::string in = temp_path(name_, "in"), err = temp_path(name_, "err");
  {
    std::ofstream f(in);
    f << text;
  }
  std::string cmd = "ip netns exec " + name_ + " iptables-restore -c" +
                    (noflush ? " --noflush" : "") + " < " + in + " 2> " + err;
  r.accepted = run(cmd, nullptr) == 0;
  r.stderr_text = read_all(err);
  if (!r.accepted) return r;
  std::string saved;
  run("ip netns exec " + name_ + " iptables-save" + (rule_counters ? " -c" : ""), &saved);
  std::istringstream lines(saved);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line[0] == '#') continue;
    r.saved += line + "\n";
  }
  return r;
}

}  // namespace dpgate::oracle
