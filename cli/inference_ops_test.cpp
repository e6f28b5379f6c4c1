#include "cli/inference_ops.h"

#include <doctest/doctest.h>

#include "cli/client.h"

using namespace bulwark::cli;
using nlohmann::json;

TEST_CASE("inference set: one route replaces the table") {
  InferenceSetFlags f{.provider = "claude", .model = "claude-sonnet-4-5"};
  auto body = inference_set_body(f, nullptr);
  CHECK(body == json::parse(R"({"privacy":"any","routes":[{"match":"*","backends":[
                                {"provider":"claude","model":"claude-sonnet-4-5","privacy":"any","cost":1.0}]}]})"));
  f = InferenceSetFlags{.provider = "ollama", .match = "llama*", .privacy = "local-only", .cost = 0, .sandbox_privacy = "local-only"};
  body = inference_set_body(f, json::parse(R"({"routes":[{"match":"x","backends":[{"provider":"p"}]}]})"));
  CHECK(body["privacy"] == "local-only");
  REQUIRE(body["routes"].size() == 1);  // no --append: the current table is not kept
  CHECK(body["routes"][0]["backends"][0] == json::parse(R"({"provider":"ollama","privacy":"local-only","cost":0.0})"));
}

TEST_CASE("inference set --append adds to the route with the same match, else a new last route") {
  json current = json::parse(R"({"sandbox_id":"0123456789abcdef","privacy":"local-only","updated_at":"2025-01-01T00:00:00Z",
    "routes":[{"match":"gpt-*","backends":[{"provider":"oa","model":"gpt-4o","privacy":"any","cost":1}]},
              {"match":"*","backends":[{"provider":"ollama","privacy":"local-only","cost":0}]}]})");
  InferenceSetFlags f{.provider = "oa2", .model = "gpt-4o-mini", .match = "gpt-*", .cost = 2, .append = true};
  auto body = inference_set_body(f, current);
  CHECK_FALSE(body.contains("sandbox_id"));
  CHECK_FALSE(body.contains("updated_at"));
  CHECK(body["privacy"] == "local-only");  // kept unless --sandbox-privacy
  REQUIRE(body["routes"][0]["backends"].size() == 2);
  CHECK(body["routes"][0]["backends"][1]["provider"] == "oa2");
  f.match = "claude-*";
  f.sandbox_privacy = "any";
  body = inference_set_body(f, current);
  REQUIRE(body["routes"].size() == 3);
  CHECK(body["routes"][2]["match"] == "claude-*");
  CHECK(body["privacy"] == "any");
  // No table yet: --append starts one.
  CHECK(inference_set_body(f, nullptr)["routes"].size() == 1);
  f = InferenceSetFlags{.provider = "oa", .model = "gpt-4o", .match = "gpt-*", .append = true};
  CHECK_THROWS_AS(inference_set_body(f, current), CliError);
}

TEST_CASE("a route table file: YAML typed by the message's fields, JSON too, errors at FILE:LINE:COL") {
  auto c = inference_config_from_text("r.yaml", R"(privacy: any
routes:
  - match: "claude-*"
    backends:
      - { provider: claude, model: 3, cost: 1.5 }
  - match: "*"
    backends:
      - provider: ollama
        privacy: local-only
        cost: 0
)");
  CHECK(c == json::parse(R"({"privacy":"any","routes":[{"match":"claude-*","backends":[{"provider":"claude","model":"3","cost":1.5}]},
                             {"match":"*","backends":[{"provider":"ollama","privacy":"local-only","cost":0.0}]}]})"));
  auto j = inference_config_from_text("r.json", R"({"routes":[{"match":"*","backends":[{"provider":"p","cost":"2"}]}]})");
  CHECK(j["routes"][0]["backends"][0]["cost"] == 2.0);

  auto fails = [](const std::string& text, const std::string& words) {
    try {
      inference_config_from_text("r.yaml", text);
      FAIL("accepted: " << text);
    } catch (const CliError& e) {
      CHECK(e.exit_code == kUsage);
      CHECK_MESSAGE(e.message.find(words) != std::string::npos, e.message);
    }
  };
  fails("routes:\n  - match: x\n    backend: []\n", "--file r.yaml:3:5: routes[0].backend: unknown field");
  fails("routes:\n  - backends:\n      - cost: cheap\n", "r.yaml:3:15: routes[0].backends[0].cost: must be a number, got 'cheap'");
  fails("routes: x\n", "routes: must be a list");
  fails("- a\n", "expected a route table");
  fails("routes: [\n", "--file r.yaml:");
}

TEST_CASE("route tables print as a table and as YAML that reads back") {
  json c = json::parse(R"({"sandbox_id":"","privacy":"any","updated_at":"2025-01-02T03:04:05.250Z",
    "routes":[{"match":"*","backends":[{"provider":"ollama","model":"","privacy":"local-only","cost":0},
                                       {"provider":"oa","model":"gpt-4o-mini","privacy":"any","cost":1.5}]}]})");
  auto t = inference_config_table(c);
  CHECK(t.find("scope global, privacy any, updated 2025-01-02T03:04:05Z\n") == 0);
  CHECK(t.find("*      ollama    (as asked)   local-only  0") != std::string::npos);
  CHECK(t.find("*      oa        gpt-4o-mini  any         1.5") != std::string::npos);
  auto y = inference_config_yaml(c);
  CHECK(y.find("# inference routes of the global scope") == 0);
  CHECK_MESSAGE(y.find("  - match: \"*\"\n    backends:\n") != std::string::npos, y);  // the message's order
  auto back = inference_config_from_text("y", y);
  c["routes"][0]["backends"][0].erase("model");  // "" is the default: left out
  CHECK(back["routes"] == c["routes"]);
  CHECK_FALSE(back.contains("sandbox_id"));
}

TEST_CASE("inference events print as a table: time, status, model -> provider(backend model), bytes, latency") {
  auto line = json::parse(R"({"stream":"inference","at":"2025-01-02T03:04:05.123Z","inference":{"model":"gpt-4o",
    "provider":"openai-main","backend_model":"gpt-backend-model","status":200,"request_bytes":"120","response_bytes":"4096",
    "latency_ms":812.4,"attempts":["broken: HTTP 503"],"streamed":true}})");
  auto failed = json::parse(R"({"stream":"inference","at":"2025-01-02T03:04:06Z","inference":{"model":"x","status":0,
    "request_bytes":"10","latency_ms":3,"error":"no route matches model x"}})");
  auto t = inference_event_table({line, failed});
  CHECK(t.find("TIME") == 0);
  CHECK_MESSAGE(t.find("2025-01-02T03:04:05Z  200     gpt-4o -> openai-main(gpt-backend-model)  120/4096  812 ms   streamed, after broken: HTTP 503") !=
                    std::string::npos,
                t);
  CHECK_MESSAGE(t.find("2025-01-02T03:04:06Z  -       x") != std::string::npos, t);
  CHECK(t.find("no route matches model x") != std::string::npos);
}
