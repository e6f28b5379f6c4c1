#pragma once
// Which upstream addresses the egress proxy refuses even when policy allowed the host name. The
// checks run on the resolved address that is actually dialled, so a name that resolves to the
// host's loopback or to the cloud metadata service (or is rebound to it between check and
// connect) cannot be used to reach them.
#include <asio/ip/address.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::proxy {

// Loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10; the cloud metadata service
// 169.254.169.254 is in it), AWS's IPv6 metadata address fd00:ec2::254, and unspecified ("this
// network" 0.0.0.0/8, which Linux dials as the local host, and ::). An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is judged as the IPv4 address it maps.
bool is_always_blocked(const asio::ip::address& a);

// RFC 1918 (10/8, 172.16/12, 192.168/16), the RFC 6598 shared space 100.64/10 (carrier NAT and
// many cloud-internal networks) and IPv6 unique-local fc00::/7.
bool is_private(const asio::ip::address& a);

struct Cidr {
  asio::ip::address network;
  unsigned prefix = 0;
};

// "10.0.0.0/8", "::1/128", or a bare address meaning that one host. nullopt when malformed.
std::optional<Cidr> parse_cidr(std::string_view s);
bool cidr_contains(const Cidr& c, const asio::ip::address& a);

struct AddressBlock {
  std::string rule;    // "bulwark:always-blocked" or "bulwark:private-address"
  std::string reason;  // "127.0.0.1 is a loopback address"
};

// Why a connection to `a` is refused, or nullopt when it may be dialled. An address inside one of
// the `allowed` CIDRs is always permitted (the policy named it explicitly); otherwise
// always-blocked addresses are refused, then private ones unless allow_private.
std::optional<AddressBlock> address_block(const asio::ip::address& a, bool allow_private,
                                          const std::vector<Cidr>& allowed);

}  // namespace bulwark::proxy
