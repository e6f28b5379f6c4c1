// The HTTP side of inference.local: classification, headers, credentials, model rewrite, errors.
#include <doctest/doctest.h>

#include "services/privacy-router/api.h"

using namespace bulwark;
using namespace bulwark::privacy_router;

namespace {
const providers::Profile& profile(const std::string& type) {
  const auto* p = providers::find(type);
  REQUIRE(p != nullptr);
  return *p;
}
bool has(const Headers& h, const std::string& name) { return find_header(h, name) != nullptr; }
}  // namespace

TEST_CASE("classify recognises each supported endpoint and keeps the query") {
  struct Row {
    const char* method;
    const char* target;
    Op op;
    ApiStyle style;
  };
  const Row rows[] = {
      {"POST", "/v1/chat/completions", Op::kChatCompletions, ApiStyle::kOpenAi},
      {"POST", "/v1/completions", Op::kCompletions, ApiStyle::kOpenAi},
      {"POST", "/v1/responses", Op::kResponses, ApiStyle::kOpenAi},
      {"POST", "/v1/embeddings", Op::kEmbeddings, ApiStyle::kOpenAi},
      {"GET", "/v1/models", Op::kModels, ApiStyle::kOpenAi},
      {"POST", "/v1/messages", Op::kMessages, ApiStyle::kAnthropic},
      {"POST", "/v1/messages/count_tokens", Op::kCountTokens, ApiStyle::kAnthropic},
      {"POST", "/v1/chat/completions/", Op::kChatCompletions, ApiStyle::kOpenAi},
      // Unknown: the error still comes in the style the caller's SDK reads.
      {"GET", "/v1/chat/completions", Op::kUnknown, ApiStyle::kOpenAi},
      {"POST", "/v1/models", Op::kUnknown, ApiStyle::kOpenAi},
      {"POST", "/v1/messages/batches", Op::kUnknown, ApiStyle::kAnthropic},
      {"POST", "/v2/chat/completions", Op::kUnknown, ApiStyle::kOpenAi},
      {"DELETE", "/v1/responses", Op::kUnknown, ApiStyle::kOpenAi},
  };
  for (const auto& r : rows) {
    CAPTURE(r.method);
    CAPTURE(r.target);
    Endpoint e = classify(r.method, r.target);
    CHECK(e.op == r.op);
    CHECK(e.style == r.style);
  }
  Endpoint e = classify("POST", "/v1/messages?beta=true");
  CHECK(e.op == Op::kMessages);
  CHECK(e.path == "/v1/messages");
  CHECK(e.query == "?beta=true");
  CHECK_FALSE(classify("GET", "/v1/models").has_body());
  CHECK(supported_endpoints().find("POST /v1/messages/count_tokens") != std::string::npos);
}

TEST_CASE("only origin-form targets without spaces or control characters are forwarded") {
  CHECK(is_safe_target("/v1/chat/completions?a=b%20c"));
  CHECK_FALSE(is_safe_target(""));
  CHECK_FALSE(is_safe_target("http://evil/v1/models"));
  CHECK_FALSE(is_safe_target("/v1/models HTTP/1.1\r\nHost: x"));
  CHECK_FALSE(is_safe_target("/v1/a b"));
}

TEST_CASE("every caller credential and hop-by-hop header is stripped; the rest travels on") {
  const char* credentials[] = {
      "Authorization", "x-api-key", "X-Api-Key", "api-key", "Cookie", "x-goog-api-key", "OpenAI-Organization",
      "openai-project", "anthropic-api-key", "Proxy-Authorization", "x-auth-token", "X-Amz-Security-Token",
      "x-client-secret", "my-apikey", "X-Credential", "x-api-key-2", "Azure-Api-Key"};
  for (const char* name : credentials) {
    CAPTURE(name);
    CHECK(is_caller_credential(name));
    Headers out = strip_request_headers({{name, "agent-secret"}, {"content-type", "application/json"}});
    REQUIRE(out.size() == 1);
    CHECK(out[0].first == "content-type");
  }
  const char* hop[] = {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade"};
  for (const char* name : hop) {
    CAPTURE(name);
    CHECK(is_hop_by_hop(name));
    CHECK(strip_request_headers({{name, "x"}}).empty());
  }
  for (const char* name : {"Host", "Content-Length", "Accept-Encoding"}) CHECK(strip_request_headers({{name, "x"}}).empty());
  Headers kept = strip_request_headers({{"Content-Type", "application/json"},
                                        {"Accept", "text/event-stream"},
                                        {"anthropic-version", "2023-06-01"},
                                        {"anthropic-beta", "tools-2024"},
                                        {"X-Stainless-Lang", "js"},
                                        {"User-Agent", "OpenAI/JS 5"}});
  CHECK(kept.size() == 6);
  // Malformed headers never reach the upstream request (no header injection).
  CHECK(strip_request_headers({{"X-Ok", "a\r\nAuthorization: Bearer stolen"},
                               {"Bad Name", "x"},
                               {"X-Nul", std::string("a\0b", 3)},
                               {"", "x"},
                               {"X-Fine", "v"}}) == Headers{{"X-Fine", "v"}});
  CHECK(is_valid_header("anthropic-beta", "tools-2024-04-04,prompt-caching"));
}

TEST_CASE("the backend's credential is injected in its type's style") {
  SUBCASE("openai: Bearer in authorization") {
    Headers h;
    inject_credential(h, profile("openai"), std::string("sk-backend"));
    REQUIRE(h.size() == 1);
    CHECK(h[0].first == "authorization");
    CHECK(h[0].second == "Bearer sk-backend");
  }
  SUBCASE("nvidia: Bearer in authorization") {
    Headers h;
    inject_credential(h, profile("nvidia"), std::string("nv-key"));
    CHECK(*find_header(h, "Authorization") == "Bearer nv-key");
  }
  SUBCASE("anthropic: the key alone in x-api-key, plus a default anthropic-version") {
    Headers h;
    inject_credential(h, profile("anthropic"), std::string("sk-ant"));
    CHECK(*find_header(h, "x-api-key") == "sk-ant");
    CHECK(*find_header(h, "anthropic-version") == "2023-06-01");
    CHECK_FALSE(has(h, "authorization"));
  }
  SUBCASE("anthropic: the caller's anthropic-version is kept") {
    Headers h = {{"Anthropic-Version", "2024-01-01"}};
    inject_credential(h, profile("anthropic"), std::string("sk-ant"));
    CHECK(h.size() == 2);
    CHECK(*find_header(h, "anthropic-version") == "2024-01-01");
  }
  SUBCASE("generic without a key: nothing") {
    Headers h;
    inject_credential(h, profile("generic"), std::nullopt);
    CHECK(h.empty());
  }
  SUBCASE("generic with a key: Bearer") {
    Headers h;
    inject_credential(h, profile("generic"), std::string("local-key"));
    CHECK(*find_header(h, "authorization") == "Bearer local-key");
  }
}

TEST_CASE("response headers lose hop-by-hop, length, encoding of transfer and cookies") {
  Headers out = relay_response_headers({{"Content-Type", "text/event-stream"},
                                        {"Content-Length", "12"},
                                        {"Transfer-Encoding", "chunked"},
                                        {"Connection", "keep-alive"},
                                        {"Set-Cookie", "session=1"},
                                        {"x-request-id", "req_1"},
                                        {"openai-processing-ms", "5"}});
  REQUIRE(out.size() == 3);
  CHECK(out[0].first == "Content-Type");
  CHECK(out[1].first == "x-request-id");
  CHECK(out[2].first == "openai-processing-ms");
}

TEST_CASE("the body needs a string model; a rewrite keeps every other field in its order") {
  const std::string original = R"({"stream":true,"model":"gpt-x","messages":[{"role":"user","content":"hi"}],"temperature":0.5})";
  Body b = parse_body(original);
  CHECK(b.model == "gpt-x");
  CHECK(rewrite_model(b, original, "") == original);  // no backend model: bytes untouched
  CHECK(rewrite_model(b, original, "gpt-x") == original);
  CHECK(rewrite_model(b, original, "llama3.2:1b") ==
        R"({"stream":true,"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}],"temperature":0.5})");

  for (const char* bad : {"[]", "{}", R"({"model":5})", R"({"model":""})", "\"x\""}) {
    CAPTURE(bad);
    try {
      parse_body(bad);
      FAIL("accepted");
    } catch (const CallError& e) {
      CHECK(e.status == 400);
      CHECK(e.param == "model");
    }
  }
  try {
    parse_body("{not json");
    FAIL("accepted");
  } catch (const CallError& e) {
    CHECK(e.status == 400);
    CHECK(e.message.find("not valid JSON") != std::string::npos);
  }
}

TEST_CASE("error bodies follow the style of the API called") {
  auto openai = nlohmann::json::parse(error_body(ApiStyle::kOpenAi, {400, "no route", "model", "model_not_found"}));
  CHECK(openai["error"]["message"] == "no route");
  CHECK(openai["error"]["type"] == "invalid_request_error");
  CHECK(openai["error"]["code"] == "model_not_found");
  CHECK(openai["error"]["param"] == "model");

  auto openai5 = nlohmann::json::parse(error_body(ApiStyle::kOpenAi, {502, "all failed"}));
  CHECK(openai5["error"]["type"] == "api_error");
  CHECK(openai5["error"]["param"].is_null());
  CHECK(openai5["error"]["code"].is_null());

  auto ant = nlohmann::json::parse(error_body(ApiStyle::kAnthropic, {400, "bad"}));
  CHECK(ant["type"] == "error");
  CHECK(ant["error"]["type"] == "invalid_request_error");
  CHECK(ant["error"]["message"] == "bad");
  CHECK(nlohmann::json::parse(error_body(ApiStyle::kAnthropic, {404, "x"}))["error"]["type"] == "not_found_error");
  CHECK(nlohmann::json::parse(error_body(ApiStyle::kAnthropic, {413, "x"}))["error"]["type"] == "request_too_large");
  CHECK(nlohmann::json::parse(error_body(ApiStyle::kAnthropic, {502, "x"}))["error"]["type"] == "api_error");
  CallError busy{503, "busy"};
  busy.overloaded = true;
  CHECK(nlohmann::json::parse(error_body(ApiStyle::kAnthropic, busy))["error"]["type"] == "overloaded_error");
  // Bytes that are not UTF-8 (an upstream's excerpt) do not break the body.
  CHECK_NOTHROW(nlohmann::json::parse(error_body(ApiStyle::kOpenAi, {502, std::string("bad \xff byte")})));
}

TEST_CASE("the model list is in OpenAI's list format") {
  auto j = nlohmann::json::parse(models_body({"gpt-x", "llama"}));
  CHECK(j["object"] == "list");
  REQUIRE(j["data"].size() == 2);
  CHECK(j["data"][0]["id"] == "gpt-x");
  CHECK(j["data"][0]["object"] == "model");
  CHECK(j["data"][0]["owned_by"] == "bulwark");
  CHECK(nlohmann::json::parse(models_body({}))["data"].empty());
}
