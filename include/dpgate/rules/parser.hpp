// Parsing iptables-restore text (as Debian's iptables 1.8.9, nf_tables
// backend, accepts it) into a Ruleset, with whole-file semantic checks.
// Control thread only. Errors are values; a failed parse changes nothing.
#pragma once

#include <string_view>
#include <vector>

#include "dpgate/rules/ruleset.hpp"

namespace dpgate::rules {

struct ParseOptions {
  // iptables-restore --noflush: *table blocks do not flush the table;
  // ":CHAIN - [0:0]" creates or flushes one chain; -X deletes one.
  bool noflush = false;
};

// Parses a whole iptables-restore file into a fresh Ruleset.
Expected<Ruleset> parse_ruleset(std::string_view text, std::string_view file,
                                const ParseOptions& options = {});

// Applies a file onto a copy of `base` (what iptables-restore does to the
// kernel's tables); returns the new Ruleset or the first error, `base` is
// never modified.
Expected<Ruleset> apply_ruleset(const Ruleset& base, std::string_view text,
                                std::string_view file, const ParseOptions& options = {});

// Whole-ruleset checks that need every table: jumps to declared chains, no
// loops, targets and matches only where their hooks allow them. parse_ruleset
// and apply_ruleset already run it.
std::vector<Error> check_ruleset(const Ruleset& ruleset);

// Splits one line into arguments the way iptables-restore does (double
// quotes group, backslash escapes inside quotes). Columns are 1-based.
struct Token {
  std::string text;
  uint32_t col = 0;
};
Expected<std::vector<Token>> tokenize_line(std::string_view line, const SourcePos& line_pos);

}  // namespace dpgate::rules
