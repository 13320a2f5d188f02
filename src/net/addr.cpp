#include "dpgate/net/addr.hpp"

#include <charconv>
#include <cstdio>

namespace dpgate::net {

namespace {

// Parses a decimal number of at most `max_digits` digits without sign or
// leading '+'. Returns the value and advances `text`.
std::optional<unsigned> take_decimal(std::string_view& text, unsigned max_value) {
  unsigned value = 0;
  const char* begin = text.data();
  const char* end = begin + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc{} || ptr == begin || ptr - begin > 3 || value > max_value) return std::nullopt;
  text.remove_prefix(static_cast<size_t>(ptr - begin));
  return value;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<uint32_t> parse_ipv4(std::string_view text) {
  uint32_t addr = 0;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    auto octet = take_decimal(text, 255);
    if (!octet) return std::nullopt;
    addr = (addr << 8) | *octet;
  }
  if (!text.empty()) return std::nullopt;
  return addr;
}

std::optional<Ipv4Prefix> parse_ipv4_prefix(std::string_view text) {
  const size_t slash = text.find('/');
  auto addr = parse_ipv4(text.substr(0, slash));
  if (!addr) return std::nullopt;
  if (slash == std::string_view::npos) return Ipv4Prefix{*addr, 32};
  std::string_view len_text = text.substr(slash + 1);
  auto len = take_decimal(len_text, 32);
  if (!len || !len_text.empty()) return std::nullopt;
  return Ipv4Prefix{*addr, static_cast<uint8_t>(*len)};
}

std::optional<MacAddr> parse_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  MacAddr mac;
  for (size_t i = 0; i < 6; ++i) {
    const int hi = hex_digit(text[i * 3]);
    const int lo = hex_digit(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != ':') return std::nullopt;
    mac.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return mac;
}

std::string format_ipv4(uint32_t host_addr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", host_addr >> 24, (host_addr >> 16) & 0xff,
                (host_addr >> 8) & 0xff, host_addr & 0xff);
  return buf;
}

std::string format_mac(const MacAddr& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac.bytes[0], mac.bytes[1],
                mac.bytes[2], mac.bytes[3], mac.bytes[4], mac.bytes[5]);
  return buf;
}

}  // namespace dpgate::net
