#include <doctest/doctest.h>

#include "cli/client.h"
#include "cli/format.h"

using namespace bulwark::cli;

TEST_CASE("tables align columns and trim trailing space") {
  CHECK(table({{"A", "BB"}, {"ccc", "d"}}) == "A    BB\nccc  d\n");
}

TEST_CASE("the sandbox table shows the exit code only when there is one") {
  auto a = nlohmann::json{{"name", "x"}, {"sandbox_id", "1"}, {"phase", "EXITED"}, {"exit_code", 3}, {"driver_id", "p"}};
  auto b = nlohmann::json{{"name", "y"}, {"sandbox_id", "2"}, {"phase", "PENDING"}};
  auto t = sandbox_table({a, b});
  CHECK(t.find("x     1   EXITED   3     p") != std::string::npos);
  CHECK(t.find("y     2   PENDING  -     -") != std::string::npos);
}

TEST_CASE("KEY=VALUE flags") {
  CHECK(key_value("--env", "A=b=c") == std::pair<std::string, std::string>{"A", "b=c"});
  CHECK_THROWS_AS(key_value("--env", "novalue"), CliError);
  CHECK_THROWS_AS(key_value("--env", "=x"), CliError);
}

TEST_CASE("denials print as a table with the rule and the policy version") {
  auto line = nlohmann::json::parse(R"({"stream":"denial","line":"x","denial":{"layer":"proxy","binary":"/usr/bin/curl",
    "host":"api.github.com","port":443,"method":"POST","path":"/repos/a/b","rule":"network_policies.github.endpoints[0]",
    "policy_version":"3","reason":"read-only"}})");
  auto t = bulwark::cli::denial_table({line});
  CHECK(t.find("LAYER") == 0);
  CHECK(t.find("api.github.com:443") != std::string::npos);
  CHECK(t.find("POST /repos/a/b") != std::string::npos);
  CHECK(t.find("network_policies.github.endpoints[0]  3") != std::string::npos);
}
