// SimpleMatchState: the reference implementation of stateful matches used
// by tests and `dpgatectl simulate`. The data plane has its own per-worker
// implementation of MatchState.
#include <algorithm>
#include <cctype>

#include "dpgate/rules/packet.hpp"

namespace dpgate::rules {

namespace {
uint64_t instance_key(uint32_t rule_id, uint32_t match_index) {
  return (uint64_t(rule_id) << 32) | match_index;
}
constexpr size_t kRecentStamps = 20;  // xt_recent ip_pkt_list_tot default
}  // namespace

uint32_t SimpleMatchState::random31() {
  // xorshift64*
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return uint32_t((rng_ * 0x2545F4914F6CDD1Dull) >> 33);
}

bool SimpleMatchState::nth(uint32_t rule_id, uint32_t match_index, const StatisticMatch& m) {
  // xt_statistic: the counter starts at every - packet (libxt_statistic),
  // wraps at every, and the packet that wraps it to 0 matches.
  auto [it, fresh] = nth_.try_emplace(instance_key(rule_id, match_index), 0);
  if (fresh) it->second = m.every - m.packet;
  it->second = it->second == m.every ? 0 : it->second + 1;
  return it->second == 0;
}

uint32_t recent_list_id(std::string_view name) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  return h & 0x7fffffff;
}

RecentCheck recent_check(const RecentMatch& m) {
  return {recent_list_id(m.name), m.seconds, m.hitcount, m.mask, m.command, m.reap, m.rttl, m.rsource};
}

bool SimpleMatchState::recent(const RecentCheck& m, const Packet& p) {
  // xt_recent recent_mt, one address family, ip_pkt_list_tot stamps.
  const uint32_t addr = (m.rsource ? p.src : p.dst) & m.mask;
  auto& table = recent_[m.list];
  auto it = table.find(addr);
  if (m.command == RecentMatch::Command::kSet) {
    Entry& e = table[addr];
    e.hits.push_back(now_);
    if (e.hits.size() > kRecentStamps) e.hits.erase(e.hits.begin());
    e.ttl = p.ttl;
    return true;
  }
  if (it == table.end()) return false;
  if (m.rttl && it->second.ttl != p.ttl) return false;
  if (m.command == RecentMatch::Command::kRemove) {
    table.erase(it);
    return true;
  }
  bool hit = true;
  if (m.seconds || m.hitcount) {
    const double since = now_ - m.seconds;
    if (m.reap && m.seconds) {
      auto& h = it->second.hits;
      h.erase(std::remove_if(h.begin(), h.end(), [&](double t) { return t < since; }), h.end());
      if (h.empty()) {
        table.erase(it);
        return false;
      }
    }
    uint32_t hits = 0;
    hit = false;
    for (double t : it->second.hits) {
      if (m.seconds && t < since) continue;
      if (!m.hitcount || ++hits >= m.hitcount) {
        hit = true;
        break;
      }
    }
  }
  if (hit && m.command == RecentMatch::Command::kUpdate) {
    Entry& e = it->second;
    e.hits.push_back(now_);
    if (e.hits.size() > kRecentStamps) e.hits.erase(e.hits.begin());
    e.ttl = p.ttl;
  }
  return hit;
}

bool SimpleMatchState::limit(uint32_t rule_id, uint32_t match_index, const LimitMatch& m) {
  // xt_limit token bucket: one packet costs avg/10000 s of credit, up to burst packets.
  Bucket& b = buckets_[instance_key(rule_id, match_index)];
  const double cost = m.avg / 10000.0;
  const double cap = cost * m.burst;
  if (!b.init) {
    b.init = true;
    b.credit = cap;
    b.last = now_;
  }
  b.credit = std::min(cap, b.credit + (now_ - b.last));
  b.last = now_;
  if (b.credit >= cost) {
    b.credit -= cost;
    return true;
  }
  return false;
}

void SimpleMatchState::nfacct(const NfacctMatch& m, const Packet&) { ++nfacct_[m.name]; }

uint64_t SimpleMatchState::nfacct_packets(const std::string& name) const {
  auto it = nfacct_.find(name);
  return it == nfacct_.end() ? 0 : it->second;
}

bool SimpleMatchState::string(const StringMatch& m, const Packet& p) {
  if (p.payload == nullptr) return false;
  const size_t to = std::min<size_t>(p.payload_len, size_t(m.to) + m.pattern.size());
  if (m.from >= to) return false;
  const uint8_t* begin = p.payload + m.from;
  const uint8_t* end = p.payload + to;
  auto eq = [&](uint8_t a, char b) {
    return m.icase ? std::tolower(a) == std::tolower(static_cast<unsigned char>(b))
                   : a == static_cast<uint8_t>(b);
  };
  return std::search(begin, end, m.pattern.begin(), m.pattern.end(), eq) != end;
}

const uint64_t* SimpleMatchState::string_scan(const StringPatterns& patterns, const Packet& p) {
  found_.assign((patterns.patterns.size() + 63) / 64, 0);
  for (size_t id = 0; id < patterns.patterns.size(); ++id) {
    if (string(patterns.patterns[id], p)) found_[id / 64] |= uint64_t{1} << (id % 64);
  }
  return found_.data();
}

}  // namespace dpgate::rules
