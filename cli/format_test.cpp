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

TEST_CASE("durations read like uptimes") {
  CHECK(bulwark::cli::human_duration(0) == "0s");
  CHECK(bulwark::cli::human_duration(300) == "0.3s");
  CHECK(bulwark::cli::human_duration(2000) == "2s");
  CHECK(bulwark::cli::human_duration(12000) == "12s");
  CHECK(bulwark::cli::human_duration(242000) == "4m2s");
  CHECK(bulwark::cli::human_duration(7500000) == "2h5m");
  CHECK(bulwark::cli::human_duration(273600000) == "3d4h");
}

TEST_CASE("the status table: gateway line, services, drivers, non-zero phases") {
  auto st = nlohmann::json::parse(R"({
    "version": "0.1.0", "instance_id": "gateway-api-1", "uptime_ms": "242000", "nats_connected": true,
    "drivers": [{"driver_id": "podman-a", "kind": "podman", "capacity": 16, "free_slots": 14, "interval_ms": 1000,
                 "draining": false, "version": "0.1.0"}],
    "services": [{"service": "gateway-api", "live": true, "instance_id": "gateway-api-1", "version": "0.1.0",
                  "uptime_ms": "242000", "error": ""},
                 {"service": "driver-vm", "live": false, "instance_id": "", "version": "", "uptime_ms": "0",
                  "error": "not running"}],
    "sandboxes_by_phase": {"PENDING": 0, "READY": 2, "DELETED": 5, "EXITED": 1}})");
  auto t = status_table(st, "http://gw:8080");
  CHECK(t.find("gateway http://gw:8080  version 0.1.0  up 4m2s  NATS connected\n") == 0);
  CHECK(t.find("gateway-api  yes   0.1.0    4m2s    gateway-api-1\n") != std::string::npos);
  CHECK(t.find("driver-vm    no    -        -       not running\n") != std::string::npos);
  CHECK(t.find("podman-a  podman  16        14    ready  0.1.0\n") != std::string::npos);
  CHECK(t.find("sandboxes: READY 2, EXITED 1, DELETED 5\n") != std::string::npos);
  st["drivers"] = nlohmann::json::array();
  st["nats_connected"] = false;
  st["sandboxes_by_phase"] = nlohmann::json::object();
  t = status_table(st, "http://gw:8080");
  CHECK(t.find("NATS DISCONNECTED") != std::string::npos);
  CHECK(t.find("no driver is sending heartbeats") != std::string::npos);
  CHECK(t.find("sandboxes: none") != std::string::npos);
}

TEST_CASE("-o yaml prints any JSON as block YAML") {
  auto y = to_yaml(nlohmann::json::parse(R"({"a": 1, "b": [true, "x"], "c": {"d": null}})"));
  CHECK(y == "a: 1\nb:\n  - true\n  - x\nc:\n  d: ~\n");
}
