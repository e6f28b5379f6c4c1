#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "cli/stream_ops.h"

using namespace bulwark::cli;
using json = nlohmann::json;

TEST_CASE("logs and events paths") {
  CHECK(logs_path("demo", 100, "", "", false) == "/v1/sandboxes/demo/logs?tail=100");
  CHECK(logs_path("demo", 5, "stdout", "5m", true) == "/v1/sandboxes/demo/logs?tail=5&stream=stdout&since=5m&follow=true");
  CHECK(logs_path("demo", 5, "", "2026-11-30T03:00:00+01:00", false) ==
        "/v1/sandboxes/demo/logs?tail=5&since=2026-11-30T03%3A00%3A00%2B01%3A00");
  CHECK(events_path("") == "/v1/events");
  CHECK(events_path("demo") == "/v1/sandboxes/demo/events");
}

TEST_CASE("SSE: events split across reads, comments ignored, multi-line data joined") {
  SseParser p;
  std::vector<std::pair<std::string, std::string>> got;
  auto on = [&](const std::string& e, const std::string& d) { got.emplace_back(e, d); };
  std::string text = ": watching all sandboxes\n\nevent: phase\ndata: {\"a\":1}\n\nevent: denial\r\ndata: x\r\ndata: y\r\n\r\ndata: plain\n\n";
  for (char c : text) p.feed(&c, 1, on);  // byte by byte: any split works
  REQUIRE(got.size() == 3);
  CHECK(got[0] == std::pair<std::string, std::string>{"phase", "{\"a\":1}"});
  CHECK(got[1] == std::pair<std::string, std::string>{"denial", "x\ny"});
  CHECK(got[2] == std::pair<std::string, std::string>{"message", "plain"});
  got.clear();
  p.feed("event: phase\ndata: {}\n", 22, on);  // not ended yet
  CHECK(got.empty());
}

TEST_CASE("event lines for people") {
  json phase = {{"sandbox_id", "sb1"}, {"at", "2026-11-30T03:00:00Z"}, {"phase", "EXITED"}, {"previous_phase", "READY"}, {"exit_code", 3}};
  CHECK(event_text("phase", phase) == "2026-11-30T03:00:00Z  sb1  phase EXITED (was READY) exit code 3");
  json created = {{"sandbox_id", "sb1"}, {"at", "t"}, {"phase", "PENDING"}, {"previous_phase", "PHASE_UNSPECIFIED"}};
  CHECK(event_text("phase", created) == "t  sb1  phase PENDING");
  json denial = {{"sandbox_id", "sb1"}, {"at", "t"}, {"denial", {{"layer", "network"}}}, {"line", "denied: direct tcp to 192.0.2.10:80"}};
  CHECK(event_text("denial", denial) == "t  sb1  denial network: denied: direct tcp to 192.0.2.10:80");
}
