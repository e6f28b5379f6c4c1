#include "supervisor/dns.h"

#include <doctest/doctest.h>

#include <random>

#include "shared/policy.h"
#include "shared/policy_engine.h"
#include "supervisor/dns_server.h"

using namespace bulwark::supervisor;

namespace {

std::string query(const std::string& name, uint16_t qtype, uint16_t id = 0x1234) {
  std::string m;
  m += static_cast<char>(id >> 8);
  m += static_cast<char>(id & 0xff);
  m += std::string("\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);  // RD, one question
  size_t at = 0;
  while (at < name.size()) {
    size_t dot = name.find('.', at);
    if (dot == std::string::npos) dot = name.size();
    m += static_cast<char>(dot - at);
    m += name.substr(at, dot - at);
    at = dot + 1;
  }
  m += '\0';
  m += static_cast<char>(qtype >> 8);
  m += static_cast<char>(qtype & 0xff);
  m += std::string("\x00\x01", 2);
  return m;
}

uint8_t rcode(const std::string& r) { return static_cast<uint8_t>(r[3]) & 0x0f; }
int ancount(const std::string& r) { return (static_cast<uint8_t>(r[6]) << 8) | static_cast<uint8_t>(r[7]); }

}  // namespace

TEST_CASE("a standard query parses: id, RD, lowercased name, type and class") {
  auto p = parse_dns_query(query("API.Example.com", kTypeA, 0xbeef));
  REQUIRE(p.query);
  CHECK(p.query->id == 0xbeef);
  CHECK(p.query->recursion_desired);
  CHECK(p.query->name == "api.example.com");
  CHECK(p.query->qtype == kTypeA);
  CHECK(p.query->qclass == 1);
  // The root name.
  auto root = parse_dns_query(query("", kTypeA));
  REQUIRE(root.query);
  CHECK(root.query->name.empty());
}

TEST_CASE("malformed queries: every truncation, bad counts, responses, other opcodes") {
  std::string q = query("a.example", kTypeA);
  for (size_t cut = 0; cut < q.size(); ++cut) {
    auto p = parse_dns_query(q.substr(0, cut));
    CHECK_FALSE(p.query);
    CHECK(p.has_id == (cut >= 12));
  }
  std::string resp = q;
  resp[2] = static_cast<char>(resp[2] | 0x80);
  CHECK_FALSE(parse_dns_query(resp).has_id);  // never answer a response
  std::string notify = q;
  notify[2] = static_cast<char>(4 << 3);
  CHECK(parse_dns_query(notify).rcode == kRcodeNotImp);
  std::string two = q;
  two[5] = 2;
  CHECK_FALSE(parse_dns_query(two).query);
  std::string label = q;
  label[12] = static_cast<char>(0x40);  // extended label type
  CHECK_FALSE(parse_dns_query(label).query);
}

TEST_CASE("compression pointers: backwards only, bounded; loops and forward pointers refused") {
  std::string hdr = std::string("\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  // A pointer to itself (offset 12) is a loop.
  auto self = parse_dns_query(hdr + std::string("\xc0\x0c\x00\x01\x00\x01", 6));
  CHECK_FALSE(self.query);
  // Forward pointer.
  CHECK_FALSE(parse_dns_query(hdr + std::string("\xc0\x20\x00\x01\x00\x01", 6)).query);
  // Backwards into the header bytes: parsed as labels there, must stay in bounds whatever they are.
  (void)parse_dns_query(hdr + std::string("\xc0\x02\x00\x01\x00\x01", 6));
  // A name longer than 255 bytes.
  std::string longname;
  for (int i = 0; i < 5; ++i) longname += std::string(63, 'a') + ".";
  longname.pop_back();
  CHECK_FALSE(parse_dns_query(query(longname, kTypeA)).query);
  // Random bytes: no crash, no out-of-bounds read (ASan), any name found is at most 255 bytes.
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::string m = hdr;
    size_t n = rng() % 40;
    for (size_t j = 0; j < n; ++j) m += static_cast<char>(rng() & 0xff);
    if (i % 2) m[12] = static_cast<char>(0xc0 | (rng() & 0x3f));
    auto p = parse_dns_query(m);
    if (p.query) CHECK(p.query->name.size() <= 255);
  }
}

TEST_CASE("responses: A answers with the question's name pointer; NXDOMAIN empty; AAAA filtered") {
  auto q = *parse_dns_query(query("a.example", kTypeA, 7)).query;
  std::vector<asio::ip::address> addrs = {asio::ip::make_address("192.0.2.1"), asio::ip::make_address("2001:db8::1")};
  std::string r = dns_response(q, kRcodeNoError, addrs, 30);
  CHECK(rcode(r) == 0);
  CHECK(ancount(r) == 1);
  CHECK(r.substr(r.size() - 4) == std::string("\xc0\x00\x02\x01", 4));
  CHECK(r[0] == 0);
  CHECK(r[1] == 7);
  CHECK((static_cast<uint8_t>(r[2]) & 0x80) != 0);
  std::string nx = dns_response(q, kRcodeNxDomain, addrs, 30);
  CHECK(rcode(nx) == kRcodeNxDomain);
  CHECK(ancount(nx) == 0);
  auto q6 = *parse_dns_query(query("a.example", kTypeAAAA)).query;
  CHECK(ancount(dns_response(q6, kRcodeNoError, addrs, 30)) == 1);
  // The response parses back as a message with the same question (its QR bit aside).
  std::string back = r;
  back[2] = static_cast<char>(back[2] & 0x7f);
  back[7] = 0;
  auto again = parse_dns_query(back);
  REQUIRE(again.query);
  CHECK(again.query->name == "a.example");
  CHECK(dns_error_response(9, kRcodeFormErr).size() == 12);
  CHECK(printable_name("a\x01.b") == "a\\x01.b");
}

TEST_CASE("the responder answers only names the policy names; the rest NXDOMAIN, reported, never looked up") {
  auto policy = bulwark::policy::CompiledPolicy::compile(bulwark::policy::parse_policy(
      "version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - { host: localhost, port: 80 }\n"
      "      - { host: \"*.never-resolves.invalid\", port: 80 }\n    binaries:\n      - { path: /usr/bin/curl }\n",
      "p.yaml"));
  std::vector<std::string> refused;
  DnsResponder::Options o;
  o.listen_addr_be = htonl(0x7f000001);
  o.port = 0;
  o.on_refused = [&](const std::string& n, uint16_t) { refused.push_back(n); };
  o.names = std::make_shared<DnsNames>();
  DnsResponder dns(o, policy);
  std::string ok = dns.answer(query("LOCALHOST", kTypeA));
  CHECK(rcode(ok) == 0);
  CHECK(ancount(ok) >= 1);
  CHECK(ok.find(std::string("\x7f\x00\x00\x01", 4)) != std::string::npos);
  // What it answered maps back, for nameless transparent connections to 127.0.0.1.
  CHECK(o.names->names_for(asio::ip::make_address("127.0.0.1")) == std::vector<std::string>{"localhost"});
  CHECK(ancount(dns.answer(query("localhost", kTypeAAAA))) == 0);  // the sandbox has no IPv6
  CHECK(rcode(dns.answer(query("x.never-resolves.invalid", kTypeA))) == kRcodeNxDomain);
  CHECK(refused.empty());
  CHECK(rcode(dns.answer(query("secret-data.evil.example", kTypeA))) == kRcodeNxDomain);
  CHECK(refused == std::vector<std::string>{"secret-data.evil.example"});
  CHECK(o.names->size() == 1);  // refused names are never recorded
  std::string inf = dns.answer(query("inference.local", kTypeA));
  CHECK(ancount(inf) == 1);
  // Live policy change: nothing allowed any more.
  dns.set_policy(bulwark::policy::CompiledPolicy::compile(bulwark::policy::Policy{}));
  CHECK(rcode(dns.answer(query("localhost", kTypeA))) == kRcodeNxDomain);
  CHECK(dns.answer("junk").empty());
}
