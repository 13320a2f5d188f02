// Printing a Ruleset as iptables-save text, byte-identical to Debian's
// iptables-save 1.8.9 (nf_tables) without its "#" comment lines.
// Control thread only.
#pragma once

#include <string>

#include "dpgate/rules/ruleset.hpp"

namespace dpgate::rules {

struct SaveOptions {
  // Print "[packets:bytes]" before every rule, as iptables-save -c.
  bool rule_counters = false;
};

// The whole ruleset: tables in iptables-save order (mangle, raw, filter,
// nat), built-in chains then user chains by name.
std::string save_ruleset(const Ruleset& ruleset, const SaveOptions& options = {});

// One rule's specification as iptables-save prints it after "-A CHAIN".
std::string rule_spec_text(const Rule& rule);

}  // namespace dpgate::rules
