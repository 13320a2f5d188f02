// The real iptables-restore / iptables-save in a private network namespace,
// as the oracle for the rules module's parser and printer. Test-only; needs
// root and Debian's iptables (nf_tables backend).
#pragma once

#include <string>
#include <vector>

namespace dpgate::oracle {

struct RealResult {
  bool accepted = false;
  std::string saved;   // iptables-save output without "#" lines (when accepted)
  std::string stderr_text;
};

// One namespace for the life of the object; deleted in the destructor.
class Netns {
 public:
  Netns();
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }

  // Creates nfacct accounting objects (kube-proxy's -m nfacct needs them).
  void add_nfacct(const std::vector<std::string>& names);
  // Starts over with an empty namespace (and these nfacct objects).
  void reset(const std::vector<std::string>& nfacct = {});
  // iptables-restore [-c] [--noflush] < text, then iptables-save [-c].
  RealResult restore_and_save(const std::string& text, bool noflush, bool rule_counters);

 private:
  std::string name_;
  bool ok_ = false;
};

// Whether this process can run the oracle (root, iptables-restore, ip).
bool oracle_available(std::string& why_not);

}  // namespace dpgate::oracle
