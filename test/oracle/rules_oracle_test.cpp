// The rules module's parser and printer against the real iptables-restore /
// iptables-save (Debian 1.8.9, nf_tables) in a private namespace.
// Usage: rules_oracle_test corpus DIR | fixtures DIR  [catch options]
// Exits 77 (meson: skipped) without root/iptables or without the fixtures.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "dpgate/rules/parser.hpp"
#include "dpgate/rules/save.hpp"
#include "oracle.hpp"

namespace fs = std::filesystem;
using namespace dpgate;

namespace {

std::string g_dir;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> nfacct_names(const std::string& text) {
  std::vector<std::string> out;
  static const std::regex re("--nfacct-name +([^ \n]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
    std::string n = (*it)[1];
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

struct Ours {
  bool accepted = false;
  std::string saved;
  std::string error;
};

Ours ours_apply(rules::Ruleset& state, const std::string& text, const std::string& file, bool noflush) {
  Ours o;
  auto rs = rules::apply_ruleset(state, text, file, rules::ParseOptions{noflush});
  if (!rs) {
    o.error = rs.error().to_string();
    return o;
  }
  state = *rs;
  o.accepted = true;
  o.saved = rules::save_ruleset(state, rules::SaveOptions{state.has_rule_counters()});
  return o;
}

// ---- iptables-t/*.t --------------------------------------------------------

struct TLine {
  std::string file;
  int line = 0;
  std::string table = "filter";
  std::vector<std::string> chains;
  std::string rule, save, result;
};

std::vector<TLine> read_t_file(const fs::path& p) {
  std::vector<TLine> out;
  std::ifstream in(p);
  std::string line, table = "filter";
  std::vector<std::string> chains;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#' || line[0] == '@' || line[0] == '%') continue;
    if (line[0] == ':') {
      chains.clear();
      std::stringstream ss(line.substr(1));
      std::string c;
      while (std::getline(ss, c, ',')) chains.push_back(c);
      continue;
    }
    if (line[0] == '*') {
      table = line.substr(1);
      continue;
    }
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ';')) f.push_back(part);
    if (f.size() < 3) continue;
    TLine t{p.filename().string(), n, table, chains, f[0], f[1], f[2]};
    if (f.size() >= 5 && f[3] == "NFT") t.result = f[4];
    out.push_back(t);
  }
  return out;
}

// Extensions dpgate does not implement: the real tool may accept these.
bool unsupported_extension(const std::string& rule) {
  return rule.find("-m tcpmss") != std::string::npos || rule.find("-m set") != std::string::npos ||
         (rule.find("-j CT") != std::string::npos && rule.find("--notrack") == std::string::npos);
}

}  // namespace

TEST_CASE("our option corpus saves exactly as the real iptables-save", "[corpus]") {
  oracle::Netns ns;
  REQUIRE(ns.ok());
  int files = 0, rules_total = 0;
  for (const auto& entry : fs::directory_iterator(g_dir)) {
    if (entry.path().extension() != ".rules") continue;
    const std::string text = read_file(entry.path());
    ns.reset();
    rules::Ruleset state;
    Ours o = ours_apply(state, text, entry.path().filename().string(), false);
    auto real = ns.restore_and_save(text, false, state.has_rule_counters());
    INFO(entry.path().filename().string() << ": " << o.error << real.stderr_text);
    REQUIRE(real.accepted);
    REQUIRE(o.accepted);
    CHECK(o.saved == real.saved);
    ++files;
    rules_total += int(state.rule_count());
  }
  WARN("corpus: " << files << " files, " << rules_total << " rules");
  CHECK(files >= 3);
}

TEST_CASE("lines the real tool refuses are refused with a position", "[corpus]") {
  oracle::Netns ns;
  REQUIRE(ns.ok());
  const std::vector<std::string> bad = {
      "*filter\n-A INPUT --source=1.2.3.4 -j ACCEPT\nCOMMIT\n",
      "*filter\n-A INPUT -ptcp -j ACCEPT\nCOMMIT\n",
      "*filter\n-A INPUT -m comment --comment kubernetes health check -j ACCEPT\nCOMMIT\n",
      "*filter\n-A INPUT -j NOPE\nCOMMIT\n",
      "*filter\n-A INPUT -o eth0 -j ACCEPT\nCOMMIT\n",
      "*filter\n-A INPUT -p tcp --dport 5 --dport 6\nCOMMIT\n",
      "*filter\n-A INPUT -m multiport --dports 5 -p tcp\nCOMMIT\n",
      "*filter\n-A INPUT -m statistic --mode nth --every 5\nCOMMIT\n",
      "*filter\n-A INPUT -m recent --rcheck --reap\nCOMMIT\n",
      "*filter\n-A INPUT -s 1.1.1.1 -s 2.2.2.2\nCOMMIT\n",
      "*filter\n-A INPUT ! -s 1.2.3.4/0 -j DROP\nCOMMIT\n",
      "*filter\n-A INPUT -j LOG --log-prefix \"\"\nCOMMIT\n",
      "*filter\n-A INPUT -p tcp --tcp-option 0\nCOMMIT\n",
      "*filter\n-A INPUT -m conntrack ! --ctdir ORIGINAL\nCOMMIT\n",
      "*filter\n-A INPUT -j ACCEPT\n",
      "*filter\n-N A\n-N B\n-A A -j B\n-A B -j A\n-A INPUT -j A\nCOMMIT\n",
      "*nat\n-A POSTROUTING -j DNAT --to-destination 1.2.3.4\nCOMMIT\n",
      "*nat\n-N X\n-A X -j DNAT --to-destination 1.2.3.4\n-A POSTROUTING -j X\nCOMMIT\n",
      "*filter\n-A INPUT -j DNAT --to-destination 1.2.3.4\nCOMMIT\n",
      "*filter\n-P FOO ACCEPT\nCOMMIT\n",
      "*nat\n-A PREROUTING -j DNAT --to-destination 1.1.1.1:80\nCOMMIT\n",
  };
  for (const auto& text : bad) {
    ns.reset();
    auto real = ns.restore_and_save(text, false, false);
    rules::Ruleset state;
    Ours o = ours_apply(state, text, "bad.rules", false);
    INFO(text);
    CHECK_FALSE(real.accepted);
    CHECK_FALSE(o.accepted);
    CHECK(o.error.rfind("bad.rules:", 0) == 0);
  }
}

TEST_CASE("dpgate refuses two things the real tool lets pass silently", "[corpus]") {
  // The real tool ignores a policy on a user chain and accepts a loop no
  // built-in chain reaches; both are mistakes a user wants to hear about.
  oracle::Netns ns;
  REQUIRE(ns.ok());
  const std::vector<std::string> stricter = {
      "*filter\n:FOO ACCEPT [0:0]\nCOMMIT\n",
      "*filter\n-N A\n-N B\n-A A -j B\n-A B -j A\nCOMMIT\n",
  };
  for (const auto& text : stricter) {
    ns.reset();
    auto real = ns.restore_and_save(text, false, false);
    rules::Ruleset state;
    Ours o = ours_apply(state, text, "strict.rules", false);
    INFO(text << o.error);
    CHECK(real.accepted);
    CHECK_FALSE(o.accepted);
    CHECK(o.error.rfind("strict.rules:", 0) == 0);
  }
}

TEST_CASE("every iptables-t line for a supported extension gets the real tool's verdict and text",
          "[fixtures]") {
  oracle::Netns ns;
  REQUIRE(ns.ok());
  int lines = 0, agree_ok = 0, agree_fail = 0, unsupported = 0, t_disagrees = 0;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(fs::path(g_dir) / "iptables-t")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    for (const TLine& t : read_t_file(path)) {
      std::string text = "*" + t.table + "\n";
      for (const auto& c : t.chains) text += "-A " + c + " " + t.rule + "\n";
      text += "COMMIT\n";
      ns.reset();
      auto real = ns.restore_and_save(text, false, false);
      rules::Ruleset state;
      Ours o = ours_apply(state, text, t.file, false);
      ++lines;
      INFO(t.file << ":" << t.line << ": " << t.rule << "\nours: " << o.error << "\nreal: " << real.stderr_text);
      // What the .t expects, to say where the real tool disagrees with it.
      bool t_accepts = t.result == "OK" || t.result == "NOMATCH";
      if (t_accepts != real.accepted) {
        ++t_disagrees;
        WARN("real iptables 1.8.9 " << (real.accepted ? "accepts" : "refuses") << " what "
                                    << t.file << ":" << t.line << " expects "
                                    << t.result << ": " << t.rule);
      } else if (real.accepted && t.result == "OK") {
        std::string want = t.save == "=" ? t.rule : t.save;
        if (real.saved.find(" " + want + "\n") == std::string::npos) {
          ++t_disagrees;
          WARN("real iptables 1.8.9 saves " << t.file << ":" << t.line << " differently from "
                                            << "its expectation '" << want << "'");
        }
      }
      if (unsupported_extension(t.rule)) {
        ++unsupported;
        CHECK_FALSE(o.accepted);  // refused clearly, never half-understood
        continue;
      }
      CHECK(o.accepted == real.accepted);
      if (o.accepted != real.accepted) continue;
      if (real.accepted) {
        CHECK(o.saved == real.saved);
        ++agree_ok;
      } else {
        ++agree_fail;
      }
    }
  }
  WARN("iptables-t: " << lines << " lines; " << agree_ok << " accepted with identical text, "
                      << agree_fail << " refused by both, " << unsupported
                      << " use unsupported extensions (tcpmss, set, CT options); "
                      << t_disagrees << " where the real tool differs from the .t file");
  CHECK(lines > 300);
}

TEST_CASE("every kube-proxy dump loads and saves as the real tool saves it", "[fixtures]") {
  const fs::path dir = fs::path(g_dir) / "kube-proxy";
  oracle::Netns ns;
  REQUIRE(ns.ok());
  for (const char* name : {"TestOverallIPTablesRules-1.rules", "TestBadIPs-1.rules",
                           "TestSyncProxyRulesRepeated-1.rules",
                           "TestSyncProxyRulesRepeated-9.rules"}) {
    const std::string text = read_file(dir / name);
    ns.reset(nfacct_names(text));
    auto real = ns.restore_and_save(text, false, false);
    rules::Ruleset state;
    Ours o = ours_apply(state, text, name, false);
    INFO(name << "\nours: " << o.error << "\nreal: " << real.stderr_text);
    REQUIRE(real.accepted);
    REQUIRE(o.accepted);
    CHECK(o.saved == real.saved);
  }
}

TEST_CASE("kube-proxy's partial syncs apply with --noflush as the real tool applies them",
          "[fixtures]") {
  const fs::path dir = fs::path(g_dir) / "kube-proxy";
  oracle::Netns ns;
  REQUIRE(ns.ok());
  std::vector<std::string> all_nfacct;
  for (int k = 1; k <= 9; ++k) {
    for (auto& n : nfacct_names(read_file(dir / ("TestSyncProxyRulesRepeated-" + std::to_string(k) + ".rules")))) {
      all_nfacct.push_back(n);
    }
  }
  ns.reset(all_nfacct);
  rules::Ruleset state;
  for (int k = 1; k <= 9; ++k) {
    const std::string name = "TestSyncProxyRulesRepeated-" + std::to_string(k) + ".rules";
    const std::string text = read_file(dir / name);
    const bool noflush = k >= 2 && k <= 8;
    auto real = ns.restore_and_save(text, noflush, false);
    Ours o = ours_apply(state, text, name, noflush);
    INFO(name << "\nours: " << o.error << "\nreal: " << real.stderr_text);
    REQUIRE(real.accepted);
    REQUIRE(o.accepted);
    CHECK(o.saved == real.saved);
  }
}

TEST_CASE("TestTracePacket's unquoted multi-word comments are refused like the real tool does",
          "[fixtures]") {
  const std::string text = read_file(fs::path(g_dir) / "kube-proxy" / "TestTracePacket-1.rules");
  oracle::Netns ns;
  REQUIRE(ns.ok());
  ns.reset(nfacct_names(text));
  auto real = ns.restore_and_save(text, false, false);
  rules::Ruleset state;
  Ours o = ours_apply(state, text, "TestTracePacket-1.rules", false);
  CHECK_FALSE(real.accepted);
  CHECK_FALSE(o.accepted);
  CHECK(o.error.rfind("TestTracePacket-1.rules:11:", 0) == 0);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s corpus|fixtures DIR [catch options]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  g_dir = argv[2];
  std::string why;
  if (!oracle::oracle_available(why)) {
    std::fprintf(stderr, "SKIP: the iptables oracle is unavailable (%s)\n", why.c_str());
    return 77;
  }
  if (!fs::is_directory(g_dir)) {
    std::fprintf(stderr, "SKIP: %s does not exist\n", g_dir.c_str());
    return 77;
  }
  std::vector<char*> args{argv[0]};
  std::string tag = "[" + mode + "]";
  args.push_back(tag.data());
  for (int k = 3; k < argc; ++k) args.push_back(argv[k]);
  return Catch::Session().run(int(args.size()), args.data());
}
