// Inference route tables: validation, SQLite as the truth, publication through a fake KV.
#include "services/gateway-api/inference.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "services/gateway-api/lifecycle.h"
#include "services/gateway-api/test_fakes.h"
#include "shared/error.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;
using namespace bulwark::gateway::fakes;
using namespace std::chrono_literals;

namespace {
v1::InferenceConfig one_route(const std::string& provider, const std::string& match = "*") {
  v1::InferenceConfig c;
  auto* r = c.add_routes();
  r->set_match(match);
  auto* b = r->add_backends();
  b->set_provider(provider);
  b->set_model("m");
  b->set_cost(1);
  return c;
}

std::optional<ProviderRow> lookup(const std::string& name) {
  if (name == "openai") return ProviderRow{"openai", "openai", "", "", 0, 0};
  if (name == "ollama") return ProviderRow{"ollama", "generic", "http://127.0.0.1:11434", "", 0, 0};
  if (name == "bare") return ProviderRow{"bare", "generic", "", "", 0, 0};
  if (name == "gh") return ProviderRow{"gh", "github", "", "", 0, 0};
  return std::nullopt;
}

std::string field_of(v1::InferenceConfig c) {
  try {
    normalize_inference(c, lookup);
  } catch (const Error& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    return e.field();
  }
  return "";
}

std::pair<Code, std::string> error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return {e.code(), e.field()};
  }
  return {Code::kInternal, "(no error)"};
}

struct Fixture {
  testing::TempDir dir;
  Store store{dir.file("g.db")};
  MapPublisher kv;
  InferenceRoutes routes{store, kv};

  Fixture() {
    store.insert_provider(ProviderRow{"openai", "openai", "", "sealed", 1, 1});
    store.insert_provider(ProviderRow{"ollama", "generic", "http://127.0.0.1:11434", "sealed", 1, 1});
  }
  std::string sandbox(const std::string& name, v1::SandboxPhase phase = v1::READY) {
    v1::Sandbox s;
    s.set_sandbox_id(random_hex(8));
    s.set_name(name);
    *s.mutable_created_at() = now_timestamp();
    transition(s, phase, "", now_timestamp());
    bool created = false;
    store.insert(s, "", &created);
    return s.sandbox_id();
  }
};
}  // namespace

TEST_CASE("a route table is checked field by field; privacy defaults to any") {
  auto c = one_route("openai");
  c.mutable_routes(0)->add_backends()->set_provider("ollama");
  normalize_inference(c, lookup);
  CHECK(c.privacy() == "any");
  CHECK(c.routes(0).backends(0).privacy() == "any");
  CHECK(c.routes(0).backends(1).privacy() == "any");

  CHECK(field_of(v1::InferenceConfig()) == "routes");
  auto p = one_route("openai");
  p.set_privacy("private");
  CHECK(field_of(p) == "privacy");
  CHECK(field_of(one_route("openai", "")) == "routes[0].match");
  auto dup = one_route("openai", "gpt-*");
  *dup.add_routes() = dup.routes(0);
  CHECK(field_of(dup) == "routes[1].match");
  auto nob = one_route("openai");
  nob.mutable_routes(0)->clear_backends();
  CHECK(field_of(nob) == "routes[0].backends");
  auto two = one_route("openai");
  two.mutable_routes(0)->add_backends()->set_provider("missing");
  CHECK(field_of(two) == "routes[0].backends[1].provider");
  CHECK(field_of(one_route("gh")) == "routes[0].backends[0].provider");    // no inference API
  CHECK(field_of(one_route("bare")) == "routes[0].backends[0].provider");  // generic without base_url
  CHECK(field_of(one_route("")) == "routes[0].backends[0].provider");
  auto bp = one_route("openai");
  bp.mutable_routes(0)->mutable_backends(0)->set_privacy("local");
  CHECK(field_of(bp) == "routes[0].backends[0].privacy");
  for (double cost : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    auto bc = one_route("openai");
    bc.mutable_routes(0)->mutable_backends(0)->set_cost(cost);
    CHECK(field_of(bc) == "routes[0].backends[0].cost");
  }
  auto zero = one_route("ollama");
  zero.mutable_routes(0)->mutable_backends(0)->set_cost(0);
  CHECK(field_of(zero) == "");
}

TEST_CASE("put stores and publishes; get and delete follow; the key is global or sandbox.<id>") {
  Fixture f;
  auto stored = f.routes.put("", one_route("openai"));
  CHECK(stored.sandbox_id() == "");
  CHECK(stored.updated_at().seconds() > 0);
  auto published = f.kv.config("global");
  REQUIRE(published);
  CHECK(published->SerializeAsString() == stored.SerializeAsString());
  CHECK(f.routes.get("").routes(0).backends(0).provider() == "openai");

  std::string id = f.sandbox("agent");
  auto scoped = f.routes.put("agent", one_route("ollama"));  // by name
  CHECK(scoped.sandbox_id() == id);
  CHECK(f.kv.config("sandbox." + id));
  CHECK(f.routes.get(id).sandbox_id() == id);
  auto in_body = one_route("openai");
  in_body.set_sandbox_id("agent");
  CHECK(f.routes.put("", in_body).sandbox_id() == id);

  f.routes.remove("agent");
  CHECK_FALSE(f.kv.config("sandbox." + id));
  CHECK(error_of([&] { f.routes.get("agent"); }).first == Code::kNotFound);
  CHECK(error_of([&] { f.routes.remove("agent"); }).first == Code::kNotFound);
  CHECK(f.kv.config("global"));  // the other scope is untouched
}

TEST_CASE("the scope must be a live sandbox, named once") {
  Fixture f;
  std::string a = f.sandbox("a");
  f.sandbox("b");
  f.sandbox("old", v1::DELETED);
  CHECK(error_of([&] { f.routes.put("nope", one_route("openai")); }) == std::pair{Code::kNotFound, std::string("sandbox_id")});
  CHECK(error_of([&] { f.routes.put("old", one_route("openai")); }) ==
        std::pair{Code::kFailedPrecondition, std::string("sandbox_id")});
  auto body = one_route("openai");
  body.set_sandbox_id("b");
  CHECK(error_of([&] { f.routes.put("a", body); }) == std::pair{Code::kInvalidArgument, std::string("sandbox_id")});
  body.set_sandbox_id(a);
  CHECK(f.routes.put("a", body).sandbox_id() == a);  // the same sandbox by id and by name
  CHECK(error_of([&] { f.routes.get("nope"); }).first == Code::kNotFound);
}

TEST_CASE("when KV fails nothing changes in SQLite, and the error is unavailable") {
  Fixture f;
  f.routes.put("", one_route("openai"));
  f.kv.fail = Error(Code::kTimeout, "nats: timeout");
  auto [code, field] = error_of([&] { f.routes.put("", one_route("ollama")); });
  CHECK(code == Code::kUnavailable);
  CHECK(f.store.find_inference("")->routes(0).backends(0).provider() == "openai");
  CHECK(error_of([&] { f.routes.remove(""); }).first == Code::kUnavailable);
  CHECK(f.store.find_inference(""));
  f.kv.fail.reset();
  CHECK(f.kv.config("global")->routes(0).backends(0).provider() == "openai");
}

TEST_CASE("the store itself refuses a route to a missing provider (checked under its lock)") {
  Fixture f;
  try {
    f.store.put_inference(one_route("ghost"));
    FAIL("stored a route to a missing provider");
  } catch (const Error& e) {
    CHECK(e.field() == "routes[0].backends[0].provider");
  }
  CHECK_FALSE(f.store.find_inference(""));
}

TEST_CASE("a deleted sandbox loses its table; start-up sync repairs KV from SQLite") {
  Fixture f;
  fakes::ScriptedControlPlane cp;
  Sandboxes sb(f.store, cp, {});
  sb.on_removed([&](const std::string& id) { f.routes.drop_sandbox(id); });
  bool created = false;
  auto s = sb.create([] {
    v1::SandboxSpec spec;
    spec.set_name("doomed");
    return spec;
  }(), "", &created);
  REQUIRE(testing::wait_until([&] { return sb.get("doomed").phase() == v1::STARTING; }, 5s));
  f.routes.put("doomed", one_route("openai"));
  f.routes.put("", one_route("openai"));
  std::string keeper = f.sandbox("keeper");
  f.routes.put("keeper", one_route("ollama"));
  REQUIRE(f.kv.config("sandbox." + s.sandbox_id()));
  sb.remove("doomed");
  CHECK(testing::wait_until([&] { return !f.kv.config("sandbox." + s.sandbox_id()); }, 5s));
  CHECK_FALSE(f.store.find_inference(s.sandbox_id()));

  // NATS wiped, plus a stale key and a table whose sandbox went while the gateway was down.
  {
    std::lock_guard l(f.kv.mu);
    f.kv.kv.clear();
    f.kv.kv["sandbox.ffffffffffffffff"] = "stale";
  }
  std::string gone = f.sandbox("gone");
  f.routes.put("gone", one_route("openai"));
  f.store.modify(gone, [](v1::Sandbox& r) {
    transition(r, v1::DELETED, "", now_timestamp());
    return true;
  });
  f.routes.sync();
  std::lock_guard l(f.kv.mu);
  std::vector<std::string> keys;
  for (const auto& [k, v] : f.kv.kv) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"global", "sandbox." + keeper});
  CHECK_FALSE(f.store.find_inference(gone));
}
