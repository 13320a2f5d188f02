// The datagrams match_bench and hs_probe scan: one definition, so that the
// raw Hyperscan figures are of the bench's very bytes.
#pragma once

#include <random>
#include <string>
#include <vector>

// IPv4 + TCP headers and HTTP-ish text that contains no rule's pattern (digits
// never follow the letters the patterns end with).
inline std::vector<std::string> datagrams(size_t payload_bytes, std::mt19937& rng) {
  std::vector<std::string> out;
  for (int k = 0; k < 64; ++k) {
    std::string d(40, '\0');
    d[0] = 0x45;
    d[9] = 6;
    std::string body = "GET /index.html HTTP/1.1\r\nHost: example\r\n";
    while (body.size() < payload_bytes) body += char(rng() % 2 ? ' ' + rng() % 16 : 'A' + rng() % 26);
    out.push_back(d + body.substr(0, payload_bytes));
  }
  return out;
}
