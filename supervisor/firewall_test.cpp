#include "supervisor/firewall.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>

using namespace bulwark::supervisor;

TEST_CASE("agent ruleset: transparent lets TCP out (but not to the supervisor) and DNS to the supervisor") {
  uint32_t host = htonl(0x0ac80001);
  std::string plain = agent_ruleset(host, 3128, 7);
  CHECK(plain.find("meta l4proto tcp accept") == std::string::npos);
  CHECK(plain.find("dport 53") == std::string::npos);
  std::string t = agent_ruleset(host, 3128, 7, true);
  CHECK(t.find("ip daddr != 10.200.0.1 meta l4proto tcp accept") != std::string::npos);
  CHECK(t.find("ip daddr 10.200.0.1 udp dport 53 accept") != std::string::npos);
  // Still before the log-and-reject rules.
  CHECK(t.find("udp dport 53 accept") < t.find("log group"));
}

TEST_CASE("supervisor-side redirect: only from the agent's veth, never to the supervisor itself, never forwarded") {
  std::string r = supervisor_redirect_ruleset("bulwark_bw0ac80000", "bw0ac80000", htonl(0x0ac80001), 3129);
  CHECK(r.find("iifname \"bw0ac80000\" ip daddr != 10.200.0.1 meta l4proto tcp redirect to :3129") != std::string::npos);
  CHECK(r.find("type nat hook prerouting priority dstnat") != std::string::npos);
  CHECK(r.find("iifname \"bw0ac80000\" drop") != std::string::npos);
  CHECK(r.rfind("delete table ip bulwark_bw0ac80000", 0) == std::string::npos);
  CHECK(r.find("delete table ip bulwark_bw0ac80000") < r.find("chain prerouting"));
}

TEST_CASE("inference.local over the transparent path: the supervisor's 80/443 open and redirected to the proxy") {
  uint32_t host = htonl(0x0ac80001);
  std::string plain = agent_ruleset(host, 3128, 7);
  CHECK(plain.find("dport { 80, 443 }") == std::string::npos);
  std::string t = agent_ruleset(host, 3128, 7, true);
  CHECK(t.find("ip daddr 10.200.0.1 tcp dport { 80, 443 } accept") != std::string::npos);
  CHECK(t.find("dport { 80, 443 } accept") < t.find("log group"));
  std::string r = supervisor_redirect_ruleset("bulwark_bw0ac80000", "bw0ac80000", htonl(0x0ac80001), 3129);
  CHECK(r.find("iifname \"bw0ac80000\" ip daddr 10.200.0.1 tcp dport { 80, 443 } redirect to :3129") != std::string::npos);
  // Any other port of the supervisor's stays unredirected (and closed by the agent's ruleset).
  CHECK(r.find("ip daddr 10.200.0.1 meta l4proto tcp redirect") == std::string::npos);
}
