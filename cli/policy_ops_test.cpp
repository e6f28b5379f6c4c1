#include "cli/policy_ops.h"

#include <doctest/doctest.h>

#include "cli/client.h"

using bulwark::cli::CliError;
using bulwark::cli::UpdateFlags;
using bulwark::cli::update_operations;

TEST_CASE("policy update flags become policy-service operations") {
  UpdateFlags f;
  f.binaries = {"/usr/bin/curl"};
  f.add_endpoint = {"api.github.com:443:read-only", "example.com:80"};
  f.add_allow = {"api.github.com:443:POST:/repos/*/issues"};
  f.add_deny = {"api.github.com:443:DELETE:/repos/**"};
  f.remove_endpoint = {"old.example.com"};
  auto ops = update_operations(f);
  REQUIRE(ops.size() == 5);
  CHECK(ops[0]["add_endpoint"]["network_policy"] == "api_github_com");
  CHECK(ops[0]["add_endpoint"]["endpoint_yaml"] == "{host: \"api.github.com\", port: 443, protocol: rest, access: read-only}");
  CHECK(ops[0]["add_endpoint"]["binaries"] == nlohmann::json({"/usr/bin/curl"}));
  CHECK(ops[1]["add_endpoint"]["endpoint_yaml"] == "{host: \"example.com\", port: 80}");
  CHECK(ops[2]["add_rule"]["rule_yaml"] == "{method: \"POST\", path: \"/repos/*/issues\"}");
  CHECK(ops[2]["add_rule"]["deny"] == false);
  CHECK(ops[3]["add_rule"]["deny"] == true);
  CHECK(ops[4]["remove_endpoint"]["host"] == "old.example.com");
  CHECK(ops[4]["remove_endpoint"]["port"] == 0);
}

TEST_CASE("malformed policy update flags are usage errors naming the flag") {
  auto fails = [](UpdateFlags f, const std::string& words) {
    try {
      update_operations(f);
      FAIL("accepted");
    } catch (const CliError& e) {
      CHECK(e.exit_code == bulwark::cli::kUsage);
      CHECK_MESSAGE(e.message.find(words) != std::string::npos, e.message);
    }
  };
  fails(UpdateFlags{}, "at least one");
  fails(UpdateFlags{.add_endpoint = {"api.github.com"}}, "--add-endpoint 'api.github.com': the port is missing");
  fails(UpdateFlags{.add_endpoint = {"api.github.com:99999"}}, "1 to 65535");
  fails(UpdateFlags{.add_endpoint = {"h:443:write"}}, "access must be");
  fails(UpdateFlags{.add_allow = {"h:443:GET"}}, "--add-allow 'h:443:GET': a field is missing");
  fails(UpdateFlags{.add_deny = {"h:443:GET:repos"}}, "must start with '/'");
}

TEST_CASE("policy pending and approve: a table of proposals and one line per approval") {
  auto rows = bulwark::cli::proposal_table({nlohmann::json{{"proposal_id", 3}, {"hits", 5}, {"binary", "/usr/bin/curl"},
                                                           {"host", "api.example.com"}, {"port", 443},
                                                           {"network_policy", "allow_api_example_com_443"},
                                                           {"status", "pending"}, {"last_reason", "no endpoint matches"}}});
  CHECK(rows.find("ID") != std::string::npos);
  CHECK(rows.find("api.example.com:443") != std::string::npos);
  CHECK(rows.find("allow_api_example_com_443") != std::string::npos);
  CHECK(rows.find("/usr/bin/curl") != std::string::npos);
  auto line = bulwark::cli::approval_line({{"proposal", {{"proposal_id", 3}, {"binary", "/usr/bin/curl"}, {"host", "api.example.com"},
                                                         {"port", 443}, {"network_policy", "allow_api_example_com_443"}}},
                                           {"policy", {{"version", "4"}, {"acknowledged", true}}}});
  CHECK(line == "proposal 3 approved: /usr/bin/curl may reach api.example.com:443 (network_policies.allow_api_example_com_443); "
                "policy version 4, enforced\n");
  auto unconfirmed = bulwark::cli::approval_line({{"proposal", {{"proposal_id", 1}}}, {"policy", {{"version", "2"}}}});
  CHECK(unconfirmed.find("not yet confirmed") != std::string::npos);
}
