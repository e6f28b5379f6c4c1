#include "supervisor/proxy/address_check.h"

#include <asio/ip/address_v4.hpp>
#include <asio/ip/address_v6.hpp>
#include <charconv>

namespace bulwark::proxy {
namespace {

asio::ip::address unmap(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

// True when the first `bits` bits of a and b are equal.
template <class Bytes>
bool same_prefix(const Bytes& a, const Bytes& b, unsigned bits) {
  for (size_t i = 0; bits > 0; ++i) {
    unsigned take = bits < 8 ? bits : 8;
    unsigned mask = (0xffu << (8 - take)) & 0xffu;
    if ((a[i] & mask) != (b[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

bool in_v4(const asio::ip::address_v4& a, const char* net, unsigned bits) {
  return same_prefix(a.to_bytes(), asio::ip::make_address_v4(net).to_bytes(), bits);
}

bool in_v6(const asio::ip::address_v6& a, const char* net, unsigned bits) {
  return same_prefix(a.to_bytes(), asio::ip::make_address_v6(net).to_bytes(), bits);
}

// What kind of always-blocked address this is, or nullptr.
const char* blocked_kind(const asio::ip::address& addr) {
  asio::ip::address a = unmap(addr);
  if (a.is_v4()) {
    auto v4 = a.to_v4();
    if (in_v4(v4, "127.0.0.0", 8)) return "a loopback address";
    if (v4 == asio::ip::make_address_v4("169.254.169.254")) return "the cloud metadata service";
    if (in_v4(v4, "169.254.0.0", 16)) return "a link-local address";
    if (in_v4(v4, "0.0.0.0", 8)) return "an unspecified address";
    return nullptr;
  }
  auto v6 = a.to_v6();
  if (v6.is_loopback()) return "a loopback address";
  if (v6 == asio::ip::make_address_v6("fd00:ec2::254")) return "the cloud metadata service";
  if (in_v6(v6, "fe80::", 10)) return "a link-local address";
  if (v6.is_unspecified()) return "an unspecified address";
  return nullptr;
}

}  // namespace

bool is_always_blocked(const asio::ip::address& a) { return blocked_kind(a) != nullptr; }

bool is_private(const asio::ip::address& addr) {
  asio::ip::address a = unmap(addr);
  if (a.is_v4()) {
    auto v4 = a.to_v4();
    return in_v4(v4, "10.0.0.0", 8) || in_v4(v4, "172.16.0.0", 12) || in_v4(v4, "192.168.0.0", 16) ||
           in_v4(v4, "100.64.0.0", 10);
  }
  return in_v6(a.to_v6(), "fc00::", 7);
}

std::optional<Cidr> parse_cidr(std::string_view s) {
  size_t slash = s.find('/');
  asio::error_code ec;
  auto addr = asio::ip::make_address(std::string(s.substr(0, slash)), ec);
  if (ec) return std::nullopt;
  unsigned max = addr.is_v4() ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view p = s.substr(slash + 1);
    auto [end, err] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || err != std::errc() || end != p.data() + p.size() || prefix > max) return std::nullopt;
  }
  return Cidr{addr, prefix};
}

bool cidr_contains(const Cidr& c, const asio::ip::address& addr) {
  // Unmap both sides, so 127.0.0.1/32 also covers ::ffff:127.0.0.1 (and the other way round).
  asio::ip::address a = unmap(addr);
  asio::ip::address net = unmap(c.network);
  unsigned prefix = c.prefix;
  if (c.network.is_v6() && net.is_v4()) prefix = prefix >= 96 ? prefix - 96 : 0;
  if (a.is_v4() != net.is_v4()) return false;
  if (a.is_v4()) return same_prefix(a.to_v4().to_bytes(), net.to_v4().to_bytes(), prefix);
  return same_prefix(a.to_v6().to_bytes(), net.to_v6().to_bytes(), prefix);
}

std::optional<AddressBlock> address_block(const asio::ip::address& a, bool allow_private,
                                          const std::vector<Cidr>& allowed) {
  for (const auto& c : allowed)
    if (cidr_contains(c, a)) return std::nullopt;
  if (const char* kind = blocked_kind(a))
    return AddressBlock{"bulwark:always-blocked", a.to_string() + " is " + kind +
                                                  ", which is always blocked unless a rule names this address as its host"};
  if (!allow_private && is_private(a))
    return AddressBlock{"bulwark:private-address",
                        a.to_string() + " is a private address, reachable only through a rule that names this host "
                                        "exactly or lists the address in allowed_ips"};
  return std::nullopt;
}

}  // namespace bulwark::proxy
