// Small operations on the Ruleset data model.
#include "dpgate/rules/ruleset.hpp"

#include <functional>

namespace dpgate::rules {

std::string Error::to_string() const {
  std::string s = pos.file.empty() ? std::string("<input>") : pos.file;
  s += ':' + std::to_string(pos.line) + ':' + std::to_string(pos.col) + ": " + message;
  return s;
}

const char* table_name(TableId t) {
  switch (t) {
    case TableId::kRaw: return "raw";
    case TableId::kMangle: return "mangle";
    case TableId::kNat: return "nat";
    case TableId::kFilter: return "filter";
  }
  return "?";
}

const char* hook_name(Hook h) {
  switch (h) {
    case Hook::kPrerouting: return "PREROUTING";
    case Hook::kInput: return "INPUT";
    case Hook::kForward: return "FORWARD";
    case Hook::kOutput: return "OUTPUT";
    case Hook::kPostrouting: return "POSTROUTING";
  }
  return "?";
}

std::optional<TableId> table_from_name(std::string_view name) {
  for (int i = 0; i < kTableCount; ++i) {
    if (name == table_name(TableId(i))) return TableId(i);
  }
  return std::nullopt;
}

std::optional<Hook> hook_from_chain_name(std::string_view name) {
  for (int i = 0; i < kHookCount; ++i) {
    if (name == hook_name(Hook(i))) return Hook(i);
  }
  return std::nullopt;
}

const std::vector<Hook>& table_hooks(TableId t) {
  static const std::vector<Hook> raw{Hook::kPrerouting, Hook::kOutput};
  static const std::vector<Hook> mangle{Hook::kPrerouting, Hook::kInput, Hook::kForward,
                                        Hook::kOutput, Hook::kPostrouting};
  static const std::vector<Hook> nat{Hook::kPrerouting, Hook::kInput, Hook::kOutput,
                                     Hook::kPostrouting};
  static const std::vector<Hook> filter{Hook::kInput, Hook::kForward, Hook::kOutput};
  switch (t) {
    case TableId::kRaw: return raw;
    case TableId::kMangle: return mangle;
    case TableId::kNat: return nat;
    case TableId::kFilter: return filter;
  }
  return filter;
}

bool Iface::matches(std::string_view ifname) const {
  if (prefix) return ifname.substr(0, name.size()) == name;
  return ifname == name;
}

Chain* Table::find(std::string_view name) {
  for (auto& c : chains) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const Chain* Table::find(std::string_view name) const {
  for (const auto& c : chains) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

ChainIndex::ChainIndex(const Table& table) : table_(&table), n_(uint32_t(table.chains.size())) {
  uint32_t slots = 4;
  while (slots < 2 * n_) slots <<= 1;  // load at most 1/2
  mask_ = slots - 1;
  slots_.assign(slots, {0, 0});
  const std::hash<std::string_view> hash;
  for (uint32_t c = 0; c < n_; ++c) {
    const size_t h = hash(table.chains[c].name);
    uint32_t s = uint32_t(h) & mask_;
    while (slots_[s].second != 0) s = (s + 1) & mask_;
    slots_[s] = {h, c + 1};
  }
}

uint32_t ChainIndex::find(std::string_view name) const {
  const size_t h = std::hash<std::string_view>{}(name);
  for (uint32_t s = uint32_t(h) & mask_; slots_[s].second != 0; s = (s + 1) & mask_) {
    const uint32_t c = slots_[s].second - 1;
    if (slots_[s].first == h && table_->chains[c].name == name) return c;
  }
  return n_;
}

size_t Ruleset::rule_count() const {
  size_t n = 0;
  for (const auto& t : tables) {
    for (const auto& c : t.chains) n += c.rules.size();
  }
  return n;
}

uint32_t Ruleset::fields_read() const {
  uint32_t fields = 0;
  auto read_by = [](const Match& m) -> uint32_t {
    if (const auto* a = std::get_if<AddrtypeMatch>(&m)) return a->src != 0 || a->dst != 0 ? packet_field::kAddrType : 0;
    if (const auto* t = std::get_if<TcpMatch>(&m)) return t->option ? packet_field::kTcpOptions : 0;
    if (const auto* c = std::get_if<ConntrackMatch>(&m)) {
      const bool tuples = c->proto.value || c->orig_src.value || c->orig_dst.value || c->repl_src.value ||
                          c->repl_dst.value || c->orig_src_port.value || c->orig_dst_port.value ||
                          c->repl_src_port.value || c->repl_dst_port.value;
      return (tuples ? packet_field::kCtTuples : 0) | (c->expire.value ? packet_field::kCtExpire : 0);
    }
    if (const auto* mk = std::get_if<MarkMatch>(&m)) {
      return mk->connmark ? packet_field::kCtMark : 0;
    }
    return 0;
  };
  for (const auto& t : tables) {
    for (const auto& c : t.chains) {
      for (const auto& r : c.rules) {
        for (const Match& m : r.matches) fields |= read_by(m);
        if (std::holds_alternative<ConnmarkTarget>(r.target)) fields |= packet_field::kCtMark;
      }
    }
  }
  return fields;
}

size_t Ruleset::chain_count() const {
  size_t n = 0;
  for (const auto& t : tables) n += t.present ? t.chains.size() : 0;
  return n;
}

size_t Ruleset::table_count() const {
  size_t n = 0;
  for (const auto& t : tables) n += t.present ? 1 : 0;
  return n;
}

bool Ruleset::has_rule_counters() const {
  for (const auto& t : tables) {
    for (const auto& c : t.chains) {
      for (const auto& r : c.rules) {
        if (r.counters) return true;
      }
    }
  }
  return false;
}

Table make_table(TableId t) {
  Table table;
  table.present = true;
  for (Hook h : table_hooks(t)) {
    Chain c;
    c.name = hook_name(h);
    c.builtin = h;
    c.policy = Policy::kAccept;
    table.chains.push_back(std::move(c));
  }
  return table;
}

}  // namespace dpgate::rules
