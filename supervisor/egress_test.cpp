#include <doctest/doctest.h>

#include "supervisor/egress.h"

using namespace bulwark;
using namespace bulwark::supervisor;

TEST_CASE("host patterns follow the schema's wildcard rules") {
  CHECK(host_matches("api.github.com", "API.GitHub.com"));
  CHECK(host_matches("api.github.com", "api.github.com."));
  CHECK_FALSE(host_matches("api.github.com", "github.com"));
  CHECK(host_matches("*.example.com", "a.example.com"));
  CHECK_FALSE(host_matches("*.example.com", "a.b.example.com"));
  CHECK_FALSE(host_matches("*.example.com", "example.com"));
  CHECK(host_matches("**.example.com", "a.b.example.com"));
  CHECK_FALSE(host_matches("**.example.com", "example.com"));
  CHECK(host_matches("*-aiplatform.googleapis.com", "us-aiplatform.googleapis.com"));
  CHECK_FALSE(host_matches("*-aiplatform.googleapis.com", "aiplatform.googleapis.com.evil.com"));
  CHECK_FALSE(host_matches("*.example.com", "evil.com"));
}

TEST_CASE("an endpoint allows its host on its ports only, naming the rule") {
  auto p = policy::parse_policy(R"(version: 1
network_policies:
  gh:
    endpoints:
      - { host: api.github.com, port: 443 }
      - { host: 127.0.0.1, port: 8080 }
    binaries:
      - { path: /usr/bin/curl }
)", "p.yaml");
  auto d = decide_l4(p, "api.github.com", 443);
  CHECK(d.allow);
  CHECK(d.rule == "network_policies.gh.endpoints[0]");
  CHECK(d.exact_host);
  CHECK_FALSE(decide_l4(p, "api.github.com", 80).allow);
  auto no = decide_l4(p, "evil.com", 443);
  CHECK_FALSE(no.allow);
  CHECK(no.reason == "no network_policies endpoint allows evil.com:443");
  auto local = decide_l4(p, "127.0.0.1", 8080);
  CHECK(local.allow);
  CHECK(local.allowed_ips == std::vector<std::string>{"127.0.0.1/32"});
}
