#include "supervisor/dns_names.h"

#include <doctest/doctest.h>

using namespace bulwark::supervisor;
using namespace std::chrono_literals;

namespace {
asio::ip::address ip(const char* s) { return asio::ip::make_address(s); }
}  // namespace

TEST_CASE("DnsNames: an address maps back to the names answered with it, newest first") {
  DnsNames n;
  auto t = DnsNames::Clock::now();
  n.record("redis.test", {ip("10.0.0.5"), ip("10.0.0.6")}, t);
  n.record("cache.example.com", {ip("10.0.0.5")}, t + 1s);
  CHECK(n.names_for(ip("10.0.0.5"), t + 2s) == std::vector<std::string>{"cache.example.com", "redis.test"});
  CHECK(n.names_for(ip("10.0.0.6"), t + 2s) == std::vector<std::string>{"redis.test"});
  CHECK(n.names_for(ip("10.0.0.7"), t + 2s).empty());
  // An IPv4-mapped IPv6 destination is the same address.
  CHECK(n.names_for(ip("::ffff:10.0.0.6"), t + 2s) == std::vector<std::string>{"redis.test"});
  // Answering redis.test again makes it the newest for 10.0.0.5, without a duplicate.
  n.record("redis.test", {ip("10.0.0.5")}, t + 3s);
  CHECK(n.names_for(ip("10.0.0.5"), t + 4s) == std::vector<std::string>{"redis.test", "cache.example.com"});
  CHECK(n.size() == 3);
}

TEST_CASE("DnsNames: bounded, and forgotten a while after the last answer") {
  DnsNames n(3, 60s);
  auto t = DnsNames::Clock::now();
  n.record("a.test", {ip("10.0.0.1")}, t);
  n.record("b.test", {ip("10.0.0.2")}, t);
  n.record("c.test", {ip("10.0.0.3")}, t);
  n.record("d.test", {ip("10.0.0.4")}, t);  // the oldest (a.test) goes
  CHECK(n.size() == 3);
  CHECK(n.names_for(ip("10.0.0.1"), t).empty());
  CHECK(n.names_for(ip("10.0.0.4"), t) == std::vector<std::string>{"d.test"});
  CHECK(n.names_for(ip("10.0.0.2"), t + 60s) == std::vector<std::string>{"b.test"});
  CHECK(n.names_for(ip("10.0.0.2"), t + 61s).empty());
  // An agent resolving many names cannot grow it: still 3.
  for (int i = 0; i < 100; ++i) n.record("n" + std::to_string(i) + ".test", {ip("10.1.0.1")}, t);
  CHECK(n.size() == 3);
}
