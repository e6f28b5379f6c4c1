// The REST surface of providers and inference routes, over real HTTP on loopback, with a real store
// and key ring, a scripted control plane and an in-memory KV (no NATS).
#include "services/gateway-api/http_api.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
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
  httplib::Server srv;
  int port = testing::free_port();
  std::thread thread;

  Api() {
    install_routes(srv, sandboxes, providers, inference, HealthInfo{[] { return true; }});
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
  };
  Reply call(const std::string& method, const std::string& path, const json& body = nullptr) {
    httplib::Client c("127.0.0.1", port);
    httplib::Result r = method == "GET"      ? c.Get(path.c_str())
                        : method == "DELETE" ? c.Delete(path.c_str())
                        : method == "POST"   ? c.Post(path.c_str(), body.dump(), "application/json")
                        : method == "PUT"    ? c.Put(path.c_str(), body.dump(), "application/json")
                                             : c.Patch(path.c_str(), body.dump(), "application/json");
    REQUIRE(r);
    return {r->status, json::parse(r->body.empty() ? "null" : r->body), r->body};
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
  check_error(api.call("GET", "/v1/inference"), 404, "not_found", "sandbox");

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
  check_error(api.call("PUT", "/v1/inference?sandbox=ghost", route_table("oa")), 404, "not_found", "sandbox");
  check_error(api.call("PUT", "/v1/inference", {{"routes", "x"}}), 400, "invalid_argument", "routes");

  bool created = false;
  v1::SandboxSpec spec;
  spec.set_name("agent");
  auto s = api.sandboxes.create(spec, "", &created);
  auto scoped = api.call("PUT", "/v1/inference?sandbox=agent", route_table("oa", "gpt-*"));
  CHECK_MESSAGE(scoped.status == 200, scoped.raw);
  CHECK(scoped.body["sandbox_id"] == s.sandbox_id());
  CHECK(api.kv.config("sandbox." + s.sandbox_id()));
  CHECK(api.call("GET", "/v1/inference?sandbox=" + s.sandbox_id()).body["routes"][0]["match"] == "gpt-*");

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
  check_error(api.call("DELETE", "/v1/inference"), 404, "not_found", "sandbox");
  CHECK(api.call("DELETE", "/v1/inference?sandbox=agent").status == 204);
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
