// The gateway against a real nats-server: route tables in KV inference_routes (and repaired at
// start), providers resolved for routers and turned into a sandbox's environment.
#include "services/gateway-api/gateway.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "shared/subjects.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
const std::string kOpenAiKey = "sk-proj-SECRET-0123456789abcdef";
const std::string kGithubToken = "ghp_SECRETTOKEN0123456789";

struct Running {
  std::unique_ptr<Bus> bus;
  std::unique_ptr<Gateway> gw;
  Running(const std::string& url, const GatewayOptions& o) : bus(Bus::connect({url, "gateway-test"})) {
    gw = std::make_unique<Gateway>(*bus, o);
  }
  ~Running() {
    gw->stop();
    bus->drain();
    gw.reset();
  }
};

json post(httplib::Client& c, const std::string& path, const json& body, int status) {
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == status, r->body);
  return json::parse(r->body);
}
}  // namespace

TEST_CASE("gateway over NATS: KV route tables, provider resolve and env, change events, repair at start") {
  testing::NatsServer nats;
  testing::TempDir dir;
  GatewayOptions o;
  o.http_port = testing::free_port();
  o.db_path = dir.file("g.db");
  auto client = Bus::connect({nats.url(), "test-client"});
  std::atomic<int> changes{0};
  auto changed_sub = client->subscribe(subjects::kProviderChanged, [&](Msg& m) {
    v1::ProviderResolveRequest r;
    if (r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) && r.name() == "gh") ++changes;
  });
  client->flush();

  auto gw = std::make_unique<Running>(nats.url(), o);
  httplib::Client http("127.0.0.1", o.http_port);
  // The first start wrote an admin token beside the database (tokens.h).
  std::string admin_token = testing::read_file(dir.file("admin.token"));
  admin_token.pop_back();
  http.set_bearer_token_auth(admin_token.c_str());
  post(http, "/v1/providers", {{"name", "oa"}, {"type", "openai"}, {"credentials", {{"OPENAI_API_KEY", kOpenAiKey}}}}, 201);
  post(http, "/v1/providers", {{"name", "gh"}, {"type", "github"}, {"credentials", {{"GITHUB_TOKEN", kGithubToken}}}}, 201);
  struct stat st {};
  REQUIRE(::stat(dir.file("provider.key").c_str(), &st) == 0);  // beside --db by default
  CHECK((st.st_mode & 0777) == 0600);

  // Routers resolve a provider with its clear credentials; an unknown one is not_found.
  v1::ProviderResolveRequest rr;
  rr.set_name("oa");
  auto resolved = client->request<v1::Provider>(subjects::kProviderResolve, rr, 5s);
  CHECK(resolved.credentials().at("OPENAI_API_KEY") == kOpenAiKey);
  rr.set_name("nope");
  try {
    client->request<v1::Provider>(subjects::kProviderResolve, rr, 5s);
    FAIL("resolved an unknown provider");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
    CHECK(e.field() == "name");
  }

  // A supervisor asks for its sandbox's environment: the github token, never the OpenAI key.
  auto s = post(http, "/v1/sandboxes", {{"name", "agent"}, {"providers", {"oa", "gh"}}}, 202);
  std::string id = s["sandbox_id"];
  v1::ProviderEnvRequest er;
  er.set_sandbox_id(id);
  auto env = client->request<v1::ProviderEnvReply>(subjects::provider_env(id), er, 5s);
  CHECK(env.env().size() == 1);
  CHECK(env.env().at("GITHUB_TOKEN") == kGithubToken);
  try {
    client->request<v1::ProviderEnvReply>(subjects::provider_env("0123456789abcdef"), er, 5s);
    FAIL("answered for another sandbox's subject");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    CHECK(e.field() == "sandbox_id");
  }
  er.set_sandbox_id("0123456789abcdef");
  try {
    client->request<v1::ProviderEnvReply>(subjects::provider_env("0123456789abcdef"), er, 5s);
    FAIL("answered for an unknown sandbox");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
  }

  // An update is announced to the routers.
  auto patched = http.Patch("/v1/providers/gh", json{{"credentials", {{"GITHUB_TOKEN", kGithubToken + "x"}}}}.dump(),
                            "application/json");
  REQUIRE(patched);
  CHECK(patched->status == 200);
  CHECK(testing::wait_until([&] { return changes.load() == 1; }, 5s));

  // A route table lands in KV as the serialized InferenceConfig, and leaves it on delete.
  json table = {{"routes", json::array({{{"match", "*"}, {"backends", json::array({{{"provider", "oa"}}})}}})}};
  auto put = http.Put("/v1/inference", table.dump(), "application/json");
  REQUIRE(put);
  REQUIRE_MESSAGE(put->status == 200, put->body);
  auto kv = client->key_value({subjects::kInferenceRoutesBucket});
  auto e = kv.get(subjects::inference_routes_key(""));
  REQUIRE(e);
  v1::InferenceConfig c;
  REQUIRE(c.ParseFromString(e->value));
  CHECK(c.routes(0).backends(0).provider() == "oa");
  CHECK(c.privacy() == "any");
  auto scoped = http.Put("/v1/inference?sandbox_id=agent", table.dump(), "application/json");
  REQUIRE(scoped);
  CHECK(scoped->status == 200);
  CHECK(kv.get("sandbox." + id));
  auto del = http.Delete("/v1/inference");
  REQUIRE(del);
  CHECK(del->status == 204);
  CHECK_FALSE(kv.get("global"));

  // NATS loses the tables (and keeps a stale one): the next start puts back what SQLite has.
  REQUIRE(http.Put("/v1/inference", table.dump(), "application/json")->status == 200);
  gw.reset();
  kv.erase("global");
  kv.erase("sandbox." + id);
  kv.put("sandbox.ffffffffffffffff", "stale");
  gw = std::make_unique<Running>(nats.url(), o);
  CHECK(kv.get("global"));
  CHECK(kv.get("sandbox." + id));
  CHECK_FALSE(kv.get("sandbox.ffffffffffffffff"));

  // Deleting the sandbox deletes its table, in SQLite and in KV.
  httplib::Client http2("127.0.0.1", o.http_port);
  http2.set_bearer_token_auth(admin_token.c_str());
  REQUIRE(http2.Delete(("/v1/sandboxes/" + id).c_str()));
  CHECK(testing::wait_until([&] { return !kv.get("sandbox." + id); }, 5s));
  auto gone = http2.Get(("/v1/inference?sandbox_id=" + id).c_str());
  REQUIRE(gone);
  CHECK(gone->status == 404);
}

TEST_CASE("the gateway refuses to start with a key file others can read, naming the fix") {
  testing::NatsServer nats;
  testing::TempDir dir;
  GatewayOptions o;
  o.http_port = testing::free_port();
  o.db_path = dir.file("g.db");
  o.provider_key_file = dir.file("ring");
  { auto box = SecretBox::load(o.provider_key_file); }
  ::chmod(o.provider_key_file.c_str(), 0644);
  auto bus = Bus::connect({nats.url(), "gateway-test"});
  try {
    Gateway gw(*bus, o);
    FAIL("started");
  } catch (const Error& e) {
    CHECK_MESSAGE(std::string(e.what()).find("chmod 600 " + o.provider_key_file) != std::string::npos, e.what());
  }
}
