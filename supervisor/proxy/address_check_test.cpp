#include "supervisor/proxy/address_check.h"

#include <doctest/doctest.h>

using namespace bulwark::proxy;

namespace {
asio::ip::address ip(const char* s) { return asio::ip::make_address(s); }
Cidr cidr(const char* s) {
  auto c = parse_cidr(s);
  REQUIRE_MESSAGE(c, s);
  return *c;
}
}  // namespace

TEST_CASE("loopback, link-local, metadata and unspecified addresses are always blocked") {
  for (const char* a : {"127.0.0.1", "127.255.255.254", "127.1.2.3", "::1", "169.254.169.254", "169.254.0.1",
                        "169.254.255.255", "fe80::1", "febf:ffff::1", "fd00:ec2::254", "0.0.0.0", "0.1.2.3", "::",
                        // IPv4-mapped IPv6 reaches the same IPv4 host and is judged as it.
                        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0"}) {
    CHECK_MESSAGE(is_always_blocked(ip(a)), a);
  }
}

TEST_CASE("ordinary public and private addresses are not always blocked") {
  for (const char* a : {"8.8.8.8", "1.1.1.1", "126.255.255.255", "128.0.0.1", "169.253.255.255", "169.255.0.0",
                        "10.0.0.1", "192.168.1.1", "2001:4860:4860::8888", "fec0::1", "fe7f::1", "fd00:ec2::253",
                        "::2", "::ffff:8.8.8.8"}) {
    CHECK_FALSE_MESSAGE(is_always_blocked(ip(a)), a);
  }
}

TEST_CASE("private ranges: RFC 1918, 100.64/10 and IPv6 unique-local") {
  for (const char* a : {"10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.0.1", "100.64.0.1",
                        "100.127.255.255", "fc00::1", "fdff::1", "::ffff:10.1.2.3"}) {
    CHECK_MESSAGE(is_private(ip(a)), a);
  }
  for (const char* a : {"11.0.0.1", "172.15.255.255", "172.32.0.1", "192.167.0.1", "100.63.255.255", "100.128.0.1",
                        "8.8.8.8", "fe00::1", "2001:db8::1"}) {
    CHECK_FALSE_MESSAGE(is_private(ip(a)), a);
  }
}

TEST_CASE("CIDRs: parsing and membership, a bare address meaning one host") {
  CHECK(cidr_contains(cidr("127.0.0.1/32"), ip("127.0.0.1")));
  CHECK_FALSE(cidr_contains(cidr("127.0.0.1/32"), ip("127.0.0.2")));
  CHECK(cidr_contains(cidr("127.0.0.1"), ip("127.0.0.1")));
  CHECK_FALSE(cidr_contains(cidr("127.0.0.1"), ip("127.0.0.2")));
  CHECK(cidr_contains(cidr("10.0.0.0/8"), ip("10.200.0.1")));
  CHECK(cidr_contains(cidr("10.0.0.1/8"), ip("10.200.0.1")));  // host bits set: the prefix still decides
  CHECK_FALSE(cidr_contains(cidr("10.0.0.0/8"), ip("11.0.0.1")));
  CHECK(cidr_contains(cidr("172.16.0.0/12"), ip("172.31.0.1")));
  CHECK_FALSE(cidr_contains(cidr("172.16.0.0/12"), ip("172.32.0.1")));
  CHECK(cidr_contains(cidr("0.0.0.0/0"), ip("203.0.113.9")));
  CHECK(cidr_contains(cidr("::1/128"), ip("::1")));
  CHECK(cidr_contains(cidr("2001:db8::/32"), ip("2001:db8:ffff::1")));
  CHECK_FALSE(cidr_contains(cidr("2001:db8::/32"), ip("2001:db9::1")));
  // Families do not mix, except through IPv4-mapped addresses, which match either way.
  CHECK_FALSE(cidr_contains(cidr("::/0"), ip("1.2.3.4")));
  CHECK_FALSE(cidr_contains(cidr("0.0.0.0/0"), ip("::1")));
  CHECK(cidr_contains(cidr("127.0.0.1/32"), ip("::ffff:127.0.0.1")));
  CHECK(cidr_contains(cidr("::ffff:10.0.0.0/104"), ip("10.9.9.9")));
  CHECK_FALSE(cidr_contains(cidr("::ffff:10.0.0.0/104"), ip("11.9.9.9")));

  for (const char* bad : {"", "x", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8x", "10.0.0.0/-1", "300.0.0.1",
                          "10.0.0.0/8/9"}) {
    CHECK_FALSE_MESSAGE(parse_cidr(bad), bad);
  }
}

TEST_CASE("address_block: an explicit allow wins, then always-blocked, then private") {
  std::vector<Cidr> none;
  auto b = address_block(ip("127.0.0.1"), true, none);
  REQUIRE(b);
  CHECK(b->rule == "bulwark:always-blocked");
  CHECK(b->reason.find("127.0.0.1 is a loopback address") != std::string::npos);
  b = address_block(ip("169.254.169.254"), true, none);
  REQUIRE(b);
  CHECK(b->reason.find("metadata") != std::string::npos);

  b = address_block(ip("10.1.2.3"), false, none);
  REQUIRE(b);
  CHECK(b->rule == "bulwark:private-address");
  CHECK_FALSE(address_block(ip("10.1.2.3"), true, none));
  CHECK_FALSE(address_block(ip("8.8.8.8"), false, none));

  std::vector<Cidr> allowed{cidr("127.0.0.1/32"), cidr("10.1.0.0/16")};
  CHECK_FALSE(address_block(ip("127.0.0.1"), false, allowed));
  CHECK_FALSE(address_block(ip("10.1.2.3"), false, allowed));  // named explicitly: allow_private not needed
  CHECK(address_block(ip("127.0.0.2"), false, allowed));
  CHECK(address_block(ip("::1"), false, allowed));
  CHECK(address_block(ip("10.2.0.1"), false, allowed));
}
