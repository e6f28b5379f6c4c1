// The REST surface of providers and inference routes, over real HTTP on loopback, with a real store
// and key ring, a scripted control plane and an in-memory KV (no NATS).
#include "services/gateway-api/http_api.h"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "services/gateway-api/test_fakes.h"
#include "shared/error.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;
using namespace bulwark::gateway::fakes;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
const std::string kSecret = "sk-ant-SECRET-0123456789abcdef";

struct Api {
  testing::TempDir dir;
  Store store{dir.file("g.db")};
  Tokens tokens{store};  // auth on, as in production: call() sends an admin token
  AuditLog audit{store};
  std::string admin_token;
  SecretBox box = SecretBox::load(dir.file("provider.key"));
  std::mutex mu;
  std::vector<std::string> changed;
  Providers providers{store, box, [this](const std::string& n) {
                        std::lock_guard l(mu);
                        changed.push_back(n);
                      }};
  MapPublisher kv;
  InferenceRoutes inference{store, kv};
  ScriptedControlPlane cp;
  Sandboxes sandboxes{store, cp, {}};
  FakeProbe probe;
  std::atomic<bool> nats{true};
  StatusBoard status{store, probe, [this] { return nats.load(); }, "gateway-api-test"};
  RateLimitOptions limits{1000, 1000};
  RestApi rest;
  httplib::Server srv;
  int port = testing::free_port();
  std::thread thread;

  explicit Api(RateLimitOptions l = {1000, 1000})
      : limits(l),
        rest(ApiDeps{sandboxes, providers, inference, store, &status, [this] { return nats.load(); }, limits, &tokens, &audit}) {
    v1::CreateTokenRequest admin;
    admin.set_name("test-admin");
    admin.set_scope("admin");
    admin_token = tokens.create(admin, "test").token();
    rest.install(srv);
    REQUIRE(srv.bind_to_port("127.0.0.1", port));
    thread = std::thread([this] { srv.listen_after_bind(); });
    REQUIRE(testing::wait_until([&] { return srv.is_running(); }, 5s));
  }
  ~Api() {
    srv.stop();
    thread.join();
    sandboxes.shutdown();
  }

  struct Reply {
    int status;
    json body;
    std::string raw;
    httplib::Headers headers;
  };
  Reply call(const std::string& method, const std::string& path, const json& body = nullptr, httplib::Headers h = {}) {
    httplib::Client c("127.0.0.1", port);
    if (!h.count("Authorization")) h.emplace("Authorization", "Bearer " + admin_token);
    httplib::Result r = method == "GET"      ? c.Get(path.c_str(), h)
                        : method == "DELETE" ? c.Delete(path.c_str(), h)
                        : method == "POST"   ? c.Post(path.c_str(), h, body.dump(), "application/json")
                        : method == "PUT"    ? c.Put(path.c_str(), h, body.dump(), "application/json")
                                             : c.Patch(path.c_str(), h, body.dump(), "application/json");
    REQUIRE(r);
    return {r->status, json::parse(r->body.empty() ? "null" : r->body), r->body, r->headers};
  }
};

void check_error(const Api::Reply& r, int status, const std::string& code, const std::string& field) {
  CHECK_MESSAGE(r.status == status, r.raw);
  CHECK_MESSAGE(r.body["error"]["code"] == code, r.raw);
  CHECK_MESSAGE(r.body["error"]["field"] == field, r.raw);
}

json route_table(const std::string& provider, const std::string& match = "*") {
  return {{"routes", json::array({{{"match", match}, {"backends", json::array({{{"provider", provider}, {"model", "m"}}})}}})}};
}
}  // namespace

TEST_CASE("REST providers: create, read, update, delete; values always masked") {
  Api api;
  auto created = api.call("POST", "/v1/providers",
                          {{"name", "claude"}, {"type", "anthropic"}, {"credentials", {{"ANTHROPIC_API_KEY", kSecret}}}});
  CHECK_MESSAGE(created.status == 201, created.raw);
  CHECK(created.body["credentials"]["ANTHROPIC_API_KEY"] == providers::mask(kSecret));
  CHECK(created.raw.find(kSecret) == std::string::npos);

  check_error(api.call("POST", "/v1/providers", {{"name", "claude"}, {"type", "anthropic"}, {"credentials", {{"ANTHROPIC_API_KEY", "x"}}}}),
              409, "already_exists", "name");
  auto bad_type = api.call("POST", "/v1/providers", {{"name", "x"}, {"type", "azure"}});
  check_error(bad_type, 400, "invalid_argument", "type");
  CHECK(bad_type.body["error"]["message"].get<std::string>().find("anthropic|openai|nvidia|github|generic") != std::string::npos);
  check_error(api.call("POST", "/v1/providers", {{"name", "x"}, {"type", "generic"}, {"credentials", {{"A-B", "v"}}}}), 400,
              "invalid_argument", "credentials.A-B");
  check_error(api.call("POST", "/v1/providers", {{"name", "x"}, {"type", "generic"}, {"base_url", "localhost:11434"}}), 400,
              "invalid_argument", "base_url");
  auto keyless = api.call("POST", "/v1/providers", {{"name", "x"}, {"type", "openai"}});
  check_error(keyless, 400, "invalid_argument", "credentials");
  CHECK(keyless.body["error"]["message"].get<std::string>().find("OPENAI_API_KEY") != std::string::npos);
  check_error(api.call("POST", "/v1/providers", {{"name", "x"}, {"type", "openai"}, {"colour", "red"}}), 400, "invalid_argument",
              "colour");

  auto list = api.call("GET", "/v1/providers");
  CHECK(list.status == 200);
  REQUIRE(list.body["providers"].size() == 1);
  CHECK(list.raw.find(kSecret) == std::string::npos);
  auto one = api.call("GET", "/v1/providers/claude");
  CHECK(one.status == 200);
  CHECK(one.body["type"] == "anthropic");
  CHECK(one.raw.find(kSecret) == std::string::npos);
  check_error(api.call("GET", "/v1/providers/nope"), 404, "not_found", "name");

  auto patched = api.call("PATCH", "/v1/providers/claude",
                          {{"credentials", {{"ANTHROPIC_API_KEY", kSecret + "-2"}}}, {"base_url", "https://proxy.example/v1"}});
  CHECK_MESSAGE(patched.status == 200, patched.raw);
  CHECK(patched.body["base_url"] == "https://proxy.example/v1");
  CHECK(patched.raw.find(kSecret) == std::string::npos);
  CHECK(api.providers.resolve("claude").credentials().at("ANTHROPIC_API_KEY") == kSecret + "-2");
  CHECK(api.call("PATCH", "/v1/providers/claude", json::object()).body["base_url"] == "https://proxy.example/v1");
  CHECK(api.call("PATCH", "/v1/providers/claude", {{"base_url", ""}}).body["base_url"] == "");
  check_error(api.call("PATCH", "/v1/providers/claude", {{"credentials", {{"ANTHROPIC_API_KEY", ""}}}}), 400, "invalid_argument",
              "credentials");
  check_error(api.call("PATCH", "/v1/providers/nope", {{"base_url", ""}}), 404, "not_found", "name");

  auto del = api.call("DELETE", "/v1/providers/claude");
  CHECK(del.status == 204);
  CHECK(del.raw.empty());
  check_error(api.call("DELETE", "/v1/providers/claude"), 404, "not_found", "name");
  std::lock_guard l(api.mu);
  CHECK(api.changed == std::vector<std::string>{"claude", "claude", "claude", "claude"});
}

TEST_CASE("REST inference: PUT, GET, DELETE per scope; errors name the field") {
  Api api;
  REQUIRE(api.call("POST", "/v1/providers", {{"name", "oa"}, {"type", "openai"}, {"credentials", {{"OPENAI_API_KEY", kSecret}}}})
              .status == 201);
  REQUIRE(api.call("POST", "/v1/providers", {{"name", "gh"}, {"type", "github"}, {"credentials", {{"GH_TOKEN", kSecret}}}})
              .status == 201);
  check_error(api.call("GET", "/v1/inference"), 404, "not_found", "sandbox_id");

  auto put = api.call("PUT", "/v1/inference", route_table("oa"));
  CHECK_MESSAGE(put.status == 200, put.raw);
  CHECK(put.body["privacy"] == "any");
  CHECK(put.body["routes"][0]["backends"][0]["privacy"] == "any");
  CHECK(put.body.contains("updated_at"));
  CHECK(api.kv.config("global"));
  CHECK(api.call("GET", "/v1/inference").body["routes"][0]["match"] == "*");

  check_error(api.call("PUT", "/v1/inference", route_table("gh")), 400, "invalid_argument", "routes[0].backends[0].provider");
  check_error(api.call("PUT", "/v1/inference", route_table("nope")), 400, "invalid_argument", "routes[0].backends[0].provider");
  check_error(api.call("PUT", "/v1/inference", {{"routes", json::array()}}), 400, "invalid_argument", "routes");
  check_error(api.call("PUT", "/v1/inference?sandbox_id=ghost", route_table("oa")), 404, "not_found", "sandbox_id");
  check_error(api.call("PUT", "/v1/inference", {{"routes", "x"}}), 400, "invalid_argument", "routes");

  bool created = false;
  v1::SandboxSpec spec;
  spec.set_name("agent");
  auto s = api.sandboxes.create(spec, "", &created);
  auto scoped = api.call("PUT", "/v1/inference?sandbox_id=agent", route_table("oa", "gpt-*"));
  CHECK_MESSAGE(scoped.status == 200, scoped.raw);
  CHECK(scoped.body["sandbox_id"] == s.sandbox_id());
  CHECK(api.kv.config("sandbox." + s.sandbox_id()));
  CHECK(api.call("GET", "/v1/inference?sandbox_id=" + s.sandbox_id()).body["routes"][0]["match"] == "gpt-*");

  // The provider is in use: not deleted, and the route is named.
  auto refused = api.call("DELETE", "/v1/providers/oa");
  check_error(refused, 409, "failed_precondition", "name");
  CHECK(refused.body["error"]["message"].get<std::string>().find("route '*' of the global table") != std::string::npos);

  api.kv.fail = Error(Code::kUnavailable, "nats: connection closed");
  check_error(api.call("PUT", "/v1/inference", route_table("oa", "claude-*")), 503, "unavailable", "");
  check_error(api.call("DELETE", "/v1/inference"), 503, "unavailable", "");
  api.kv.fail.reset();
  CHECK(api.call("GET", "/v1/inference").body["routes"][0]["match"] == "*");

  CHECK(api.call("DELETE", "/v1/inference").status == 204);
  CHECK_FALSE(api.kv.config("global"));
  check_error(api.call("DELETE", "/v1/inference"), 404, "not_found", "sandbox_id");
  CHECK(api.call("DELETE", "/v1/inference?sandbox_id=agent").status == 204);
  CHECK(api.call("DELETE", "/v1/providers/oa").status == 204);
}

TEST_CASE("REST sandboxes: spec.providers must exist; logs serve the inference stream") {
  Api api;
  REQUIRE(api.call("POST", "/v1/providers", {{"name", "gh"}, {"type", "github"}, {"credentials", {{"GITHUB_TOKEN", kSecret}}}})
              .status == 201);
  auto refused = api.call("POST", "/v1/sandboxes", {{"name", "a"}, {"providers", {"gh", "missing"}}});
  check_error(refused, 400, "invalid_argument", "providers[1]");
  auto ok = api.call("POST", "/v1/sandboxes", {{"name", "a"}, {"providers", {"gh"}}});
  CHECK_MESSAGE(ok.status == 202, ok.raw);
  CHECK(ok.body["spec"]["providers"] == json::array({"gh"}));
  CHECK(ok.raw.find(kSecret) == std::string::npos);

  std::string id = ok.body["sandbox_id"];
  v1::LogLine l;
  l.set_sandbox_id(id);
  l.set_stream("inference");
  l.set_line("gpt-4o -> oa(gpt-4o) 200");
  l.mutable_inference()->set_model("gpt-4o");
  l.mutable_inference()->set_status(200);
  api.sandboxes.on_log(l, 1);
  v1::LogLine out = l;
  out.set_stream("stdout");
  out.clear_inference();
  api.sandboxes.on_log(out, 2);
  auto logs = api.call("GET", "/v1/sandboxes/" + id + "/logs?stream=inference");
  CHECK_MESSAGE(logs.status == 200, logs.raw);
  REQUIRE(logs.body["lines"].size() == 1);
  CHECK(logs.body["lines"][0]["inference"]["model"] == "gpt-4o");
  check_error(api.call("GET", "/v1/sandboxes/" + id + "/logs?stream=bogus"), 400, "invalid_argument", "stream");
}

TEST_CASE("route table: every route unique, templates become anchored regexes") {
  CHECK(path_regex("/v1/sandboxes/{sandbox_id}/policy") == "/v1/sandboxes/([^/]+)/policy");
  CHECK(path_regex("/healthz") == "/healthz");
  CHECK(path_regex("/a.b/{x}") == "/a\\.b/([^/]+)");
  std::set<std::string> seen;
  for (const auto& r : route_specs()) CHECK_MESSAGE(seen.insert(r.method + " " + r.path).second, r.method, " ", r.path);
  CHECK(seen.count("GET /v1/status"));
}

TEST_CASE("REST sandbox list: pages in creation order, label and phase filters, bad values name the parameter") {
  Api api;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    json spec = {{"name", "s" + std::to_string(i)}, {"labels", {{"team", i % 2 ? "ml" : "web"}, {"ci", "yes"}}}};
    auto r = api.call("POST", "/v1/sandboxes", spec);
    REQUIRE_MESSAGE(r.status == 202, r.raw);
    ids.push_back(r.body["sandbox_id"]);
  }
  // Placement runs on workers: wait until every sandbox has left PENDING.
  REQUIRE(testing::wait_until([&] { return api.call("GET", "/v1/sandboxes?phase=PENDING").body["sandboxes"].empty(); }, 5s));

  auto all = api.call("GET", "/v1/sandboxes");
  REQUIRE(all.body["sandboxes"].size() == 5);
  CHECK(all.body["next_page_token"] == "");
  std::vector<std::string> walked;
  std::string token;
  int pages = 0;
  do {
    auto p = api.call("GET", "/v1/sandboxes?limit=2" + (token.empty() ? "" : "&page_token=" + token));
    REQUIRE_MESSAGE(p.status == 200, p.raw);
    CHECK(p.body["sandboxes"].size() <= 2);
    for (const auto& s : p.body["sandboxes"]) walked.push_back(s["sandbox_id"]);
    token = p.body["next_page_token"];
    ++pages;
  } while (!token.empty() && pages < 10);
  CHECK(pages == 3);
  std::vector<std::string> expected;
  for (const auto& s : all.body["sandboxes"]) expected.push_back(s["sandbox_id"]);
  CHECK(walked == expected);

  auto ml = api.call("GET", "/v1/sandboxes?label=team=ml&label=ci%3Dyes");
  REQUIRE_MESSAGE(ml.status == 200, ml.raw);
  REQUIRE(ml.body["sandboxes"].size() == 2);
  for (const auto& s : ml.body["sandboxes"]) CHECK(s["spec"]["labels"]["team"] == "ml");
  auto first = api.call("GET", "/v1/sandboxes?label=team=ml&limit=1");
  REQUIRE(first.body["sandboxes"].size() == 1);
  auto second = api.call("GET", "/v1/sandboxes?label=team=ml&limit=1&page_token=" + first.body["next_page_token"].get<std::string>());
  REQUIRE(second.body["sandboxes"].size() == 1);
  CHECK(second.body["sandboxes"][0]["sandbox_id"] != first.body["sandboxes"][0]["sandbox_id"]);
  // The token belongs to its filter.
  check_error(api.call("GET", "/v1/sandboxes?limit=1&page_token=" + first.body["next_page_token"].get<std::string>()), 400,
              "invalid_argument", "page_token");

  // The scripted control plane places them; with no supervisor to check in they stay STARTING.
  CHECK(api.call("GET", "/v1/sandboxes?phase=STARTING").body["sandboxes"].size() == 5);
  CHECK(api.call("GET", "/v1/sandboxes?phase=FAILED").body["sandboxes"].empty());
  api.call("DELETE", "/v1/sandboxes/s0");
  REQUIRE(testing::wait_until([&] { return api.sandboxes.get("s0").phase() == v1::DELETED; }, 5s));
  CHECK(api.call("GET", "/v1/sandboxes").body["sandboxes"].size() == 4);
  CHECK(api.call("GET", "/v1/sandboxes?all=true").body["sandboxes"].size() == 5);
  CHECK(api.call("GET", "/v1/sandboxes?phase=DELETED").body["sandboxes"].size() == 1);
  CHECK(api.call("GET", "/v1/sandboxes?phase=DELETED&phase=STARTING").body["sandboxes"].size() == 5);

  check_error(api.call("GET", "/v1/sandboxes?limit=0"), 400, "invalid_argument", "limit");
  check_error(api.call("GET", "/v1/sandboxes?limit=5000"), 400, "invalid_argument", "limit");
  check_error(api.call("GET", "/v1/sandboxes?limit=1&limit=2"), 400, "invalid_argument", "limit");
  check_error(api.call("GET", "/v1/sandboxes?phase=RUNNING"), 400, "invalid_argument", "phase");
  check_error(api.call("GET", "/v1/sandboxes?label=team"), 400, "invalid_argument", "label");
  check_error(api.call("GET", "/v1/sandboxes?page_token=bogus!"), 400, "invalid_argument", "page_token");
  check_error(api.call("GET", "/v1/sandboxes?all=maybe"), 400, "invalid_argument", "all");
  auto typo = api.call("GET", "/v1/sandboxes?labels=team=ml");
  check_error(typo, 400, "invalid_argument", "labels");
  CHECK(typo.body["error"]["message"].get<std::string>().find("unknown query parameter") != std::string::npos);
  check_error(api.call("GET", "/v1/sandboxes/s1?verbose=1"), 400, "invalid_argument", "verbose");
}

TEST_CASE("REST provider list pages by name") {
  Api api;
  for (const char* n : {"delta", "alpha", "charlie", "bravo"})
    REQUIRE(api.call("POST", "/v1/providers", {{"name", n}, {"type", "generic"}}).status == 201);
  auto p1 = api.call("GET", "/v1/providers?limit=3");
  REQUIRE(p1.body["providers"].size() == 3);
  CHECK(p1.body["providers"][0]["name"] == "alpha");
  CHECK(p1.body["providers"][2]["name"] == "charlie");
  auto p2 = api.call("GET", "/v1/providers?limit=3&page_token=" + p1.body["next_page_token"].get<std::string>());
  REQUIRE(p2.body["providers"].size() == 1);
  CHECK(p2.body["providers"][0]["name"] == "delta");
  CHECK(p2.body["next_page_token"] == "");
  CHECK(api.call("GET", "/v1/providers").body["providers"].size() == 4);
  check_error(api.call("GET", "/v1/providers?limit=x"), 400, "invalid_argument", "limit");
  check_error(api.call("GET", "/v1/providers?page_token=AAAA"), 400, "invalid_argument", "page_token");
}

TEST_CASE("Idempotency-Key: a retry gets the first answer, another body is refused, a failure can be retried") {
  Api api;
  httplib::Headers key = {{"Idempotency-Key", "job-42"}};
  json spec = {{"command", {"sh", "-c", "echo hi"}}};  // no name: a second create would make a second sandbox
  auto first = api.call("POST", "/v1/sandboxes", spec, key);
  REQUIRE_MESSAGE(first.status == 202, first.raw);
  CHECK(first.body["phase"] == "PENDING");
  REQUIRE(testing::wait_until([&] { return api.sandboxes.get(first.body["sandbox_id"]).phase() == v1::STARTING; }, 5s));
  auto again = api.call("POST", "/v1/sandboxes", json::parse(R"({ "command" : ["sh", "-c", "echo hi"] })"), key);
  CHECK(again.status == 202);
  CHECK(again.raw == first.raw);  // the original answer, PENDING and all
  CHECK(httplib::detail::get_header_value(again.headers, "Idempotent-Replayed", 0, "") == std::string("true"));
  CHECK(api.call("GET", "/v1/sandboxes").body["sandboxes"].size() == 1);

  auto other = api.call("POST", "/v1/sandboxes", {{"command", {"true"}}}, key);
  check_error(other, 409, "already_exists", "Idempotency-Key");
  check_error(api.call("POST", "/v1/sandboxes", spec, {{"Idempotency-Key", std::string(300, 'k')}}), 400, "invalid_argument",
              "Idempotency-Key");

  // Refused, so not kept: the same key works once the request is fixed.
  httplib::Headers key2 = {{"Idempotency-Key", "job-43"}};
  check_error(api.call("POST", "/v1/sandboxes", {{"name", "Bad Name"}}, key2), 400, "invalid_argument", "name");
  CHECK(api.call("POST", "/v1/sandboxes", {{"name", "good"}}, key2).status == 202);
  CHECK(api.call("POST", "/v1/sandboxes", {{"name", "good"}}, key2).status == 202);

  // Providers: 201 again, not 409 "already exists".
  httplib::Headers pkey = {{"Idempotency-Key", "prov-1"}};
  json prov = {{"name", "gh"}, {"type", "github"}, {"credentials", {{"GITHUB_TOKEN", kSecret}}}};
  auto p1 = api.call("POST", "/v1/providers", prov, pkey);
  REQUIRE(p1.status == 201);
  auto p2 = api.call("POST", "/v1/providers", prov, pkey);
  CHECK(p2.status == 201);
  CHECK(p2.raw == p1.raw);
  CHECK(p2.raw.find(kSecret) == std::string::npos);  // the kept answer is the masked one
  check_error(api.call("POST", "/v1/providers", prov), 409, "already_exists", "name");  // without the key: a new create
  prov["credentials"]["GITHUB_TOKEN"] = "other";
  check_error(api.call("POST", "/v1/providers", prov, pkey), 409, "already_exists", "Idempotency-Key");
  // Keys are per route: the same key on another create is another request.
  CHECK(api.call("POST", "/v1/sandboxes", {{"name", "prov-1-sandbox"}}, pkey).status == 202);
}

TEST_CASE("Idempotency-Key: concurrent retries create one sandbox") {
  Api api;
  std::vector<std::future<Api::Reply>> calls;
  for (int i = 0; i < 6; ++i)
    calls.push_back(std::async(std::launch::async, [&] {
      return api.call("POST", "/v1/sandboxes", {{"image", "busybox"}}, {{"Idempotency-Key", "race"}});
    }));
  std::set<std::string> ids;
  for (auto& f : calls) {
    auto r = f.get();
    CHECK_MESSAGE(r.status == 202, r.raw);
    ids.insert(r.body.value("sandbox_id", ""));
  }
  CHECK(ids.size() == 1);
  CHECK(api.call("GET", "/v1/sandboxes").body["sandboxes"].size() == 1);
}

TEST_CASE("rate limit: 429 with Retry-After and the JSON error; /healthz is never limited") {
  Api api(RateLimitOptions{0.5, 2});
  CHECK(api.call("GET", "/v1/providers").status == 200);
  CHECK(api.call("GET", "/v1/providers").status == 200);
  auto refused = api.call("POST", "/v1/providers", {{"name", "x"}, {"type", "generic"}});
  check_error(refused, 429, "resource_exhausted", "");
  CHECK(httplib::detail::get_header_value(refused.headers, "Retry-After", 0, "") == std::string("2"));
  CHECK(refused.body["error"]["message"].get<std::string>().find("127.0.0.1") != std::string::npos);
  CHECK(api.call("GET", "/v1/providers/x").status == 429);
  for (int i = 0; i < 5; ++i) CHECK(api.call("GET", "/healthz").status == 200);
  // The refused POST ran nothing, and its connection stayed usable.
  CHECK_FALSE(api.store.find_provider("x"));
}

TEST_CASE("REST status and healthz") {
  Api api;
  api.probe.live = {"gateway-api", "scheduler"};
  v1::DriverHeartbeat hb;
  hb.set_driver_id("podman-1");
  hb.set_kind("podman");
  hb.set_capacity(16);
  hb.set_free_slots(16);
  hb.set_interval_ms(1000);
  api.status.on_heartbeat(hb);
  REQUIRE(api.call("POST", "/v1/sandboxes", {{"name", "one"}}).status == 202);

  auto st = api.call("GET", "/v1/status?timeout_ms=200");
  REQUIRE_MESSAGE(st.status == 200, st.raw);
  CHECK(st.body["version"] == kVersion);
  CHECK(st.body["nats_connected"] == true);
  CHECK(st.body["uptime_ms"].is_string());  // int64: a string in the JSON mapping
  CHECK(st.body["drivers"][0]["driver_id"] == "podman-1");
  CHECK(st.body["drivers"][0]["capacity"] == 16);
  CHECK(st.body["services"].size() == status_services().size());
  CHECK(st.body["services"][1]["live"] == true);
  CHECK(st.body["services"][2]["live"] == false);
  CHECK(st.body["services"][2]["error"].get<std::string>().find("not running") != std::string::npos);
  int total = 0;
  for (const auto& [phase, n] : st.body["sandboxes_by_phase"].items()) total += n.get<int>();
  CHECK(total == 1);
  check_error(api.call("GET", "/v1/status?timeout_ms=0"), 400, "invalid_argument", "timeout_ms");
  check_error(api.call("GET", "/v1/status?timeout_ms=60000"), 400, "invalid_argument", "timeout_ms");

  auto ok = api.call("GET", "/healthz");
  CHECK(ok.status == 200);
  CHECK(ok.body == json{{"status", "ok"}, {"nats", "connected"}});
  api.nats = false;
  auto down = api.call("GET", "/healthz");
  CHECK(down.status == 503);
  CHECK(down.body["status"] == "degraded");
  CHECK(down.body["error"]["code"] == "unavailable");
  CHECK(api.call("GET", "/v1/status").body["nats_connected"] == false);
}

TEST_CASE("errors the server makes itself are JSON too") {
  Api api;
  check_error(api.call("GET", "/v1/nothing"), 404, "not_found", "");
  httplib::Client c("127.0.0.1", api.port);
  c.set_bearer_token_auth(api.admin_token.c_str());  // without it the answer is 401, before the size is looked at
  auto big = c.Post("/v1/sandboxes", std::string(2 << 20, ' '), "application/json");
  REQUIRE(big);
  CHECK(big->status == 413);
  CHECK(json::parse(big->body)["error"]["code"] == "payload_too_large");
}
