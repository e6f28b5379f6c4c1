// Store against a real SQLite file.
#include <doctest/doctest.h>

#include "services/gateway-api/lifecycle.h"
#include "services/gateway-api/store.h"
#include "shared/error.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
v1::Sandbox record(const std::string& id, const std::string& name) {
  v1::Sandbox s;
  s.set_sandbox_id(id);
  s.set_name(name);
  *s.mutable_created_at() = now_timestamp();
  transition(s, v1::PENDING, "", now_timestamp());
  return s;
}
}  // namespace

TEST_CASE("records survive reopening the database") {
  testing::TempDir dir;
  bool created = false;
  {
    Store st(dir.file("g.db"));
    st.insert(record("id1", "alpha"), "", &created);
    CHECK(created);
    st.modify("id1", [](v1::Sandbox& s) {
      transition(s, v1::READY, "", now_timestamp());
      return true;
    });
  }
  Store st(dir.file("g.db"));
  auto s = st.find("alpha");
  REQUIRE(s);
  CHECK(s->sandbox_id() == "id1");
  CHECK(s->phase() == v1::READY);
  CHECK(st.find("id1"));
  CHECK_FALSE(st.find("nope"));
}

TEST_CASE("a live name is unique; a deleted sandbox frees it") {
  testing::TempDir dir;
  Store st(dir.file("g.db"));
  bool created = false;
  st.insert(record("id1", "alpha"), "", &created);
  try {
    st.insert(record("id2", "alpha"), "", &created);
    FAIL("duplicate name accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kAlreadyExists);
    CHECK(e.field() == "name");
  }
  st.modify("id1", [](v1::Sandbox& s) {
    transition(s, v1::DELETED, "", now_timestamp());
    return true;
  });
  st.insert(record("id2", "alpha"), "", &created);
  CHECK(st.find("alpha")->sandbox_id() == "id2");  // the live one wins
  CHECK(st.list(false).size() == 1);
  CHECK(st.list(true).size() == 2);
}

TEST_CASE("an idempotency key returns the first record instead of creating twice") {
  testing::TempDir dir;
  Store st(dir.file("g.db"));
  bool created = false;
  st.insert(record("id1", "a"), "key-1", &created);
  CHECK(created);
  auto again = st.insert(record("id2", "b"), "key-1", &created);
  CHECK_FALSE(created);
  CHECK(again.sandbox_id() == "id1");
  CHECK(st.list(true).size() == 1);
}

TEST_CASE("logs are stored once per stream sequence and tail returns the newest in order") {
  testing::TempDir dir;
  Store st(dir.file("g.db"));
  for (uint64_t i = 1; i <= 5; ++i) {
    v1::LogLine l;
    l.set_sandbox_id("id1");
    l.set_line("line " + std::to_string(i));
    st.append_log(l, i);
    st.append_log(l, i);  // redelivered
  }
  auto all = st.logs("id1", 100);
  CHECK(all.size() == 5);
  auto tail = st.logs("id1", 2);
  REQUIRE(tail.size() == 2);
  CHECK(tail[0].line() == "line 4");
  CHECK(tail[1].line() == "line 5");
}

TEST_CASE("a database path that cannot be opened names the path") {
  try {
    Store st("/no/such/dir/g.db");
    FAIL("opened");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("/no/such/dir/g.db") != std::string::npos);
  }
}

TEST_CASE("provider rows: unique names, read-modify-write, listed by name") {
  testing::TempDir dir;
  Store st(dir.file("g.db"));
  st.insert_provider(ProviderRow{"zeta", "github", "", "sealed-z", 1, 1});
  st.insert_provider(ProviderRow{"alpha", "openai", "https://x", "sealed-a", 2, 2});
  try {
    st.insert_provider(ProviderRow{"alpha", "github", "", "other", 3, 3});
    FAIL("duplicate name accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kAlreadyExists);
    CHECK(e.field() == "name");
  }
  auto all = st.list_providers();
  REQUIRE(all.size() == 2);
  CHECK(all[0].name == "alpha");
  CHECK(all[0].sealed_credentials == "sealed-a");
  auto after = st.modify_provider("alpha", [](ProviderRow& r) {
    r.base_url = "https://y";
    r.sealed_credentials = "sealed-b";
    r.updated_ms = 9;
    return true;
  });
  REQUIRE(after);
  auto again = st.find_provider("alpha");
  CHECK(again->base_url == "https://y");
  CHECK(again->sealed_credentials == "sealed-b");
  CHECK(again->created_ms == 2);
  CHECK(again->updated_ms == 9);
  CHECK_FALSE(st.modify_provider("nope", [](ProviderRow&) { return true; }));
  CHECK(st.delete_provider("zeta"));
  CHECK_FALSE(st.delete_provider("zeta"));
  CHECK_FALSE(st.find_provider("zeta"));
}

TEST_CASE("inference configs by scope survive reopening; a provider in use cannot be deleted") {
  testing::TempDir dir;
  {
    Store st(dir.file("g.db"));
    st.insert_provider(ProviderRow{"p", "openai", "", "s", 1, 1});
    v1::InferenceConfig global, scoped;
    auto* b = global.add_routes();
    b->set_match("*");
    b->add_backends()->set_provider("p");
    scoped = global;
    scoped.set_sandbox_id("id1");
    scoped.mutable_routes(0)->set_match("gpt-*");
    st.put_inference(global);
    st.put_inference(scoped);
    scoped.set_privacy("local-only");
    st.put_inference(scoped);  // replaces
  }
  Store st(dir.file("g.db"));
  auto all = st.list_inference();
  REQUIRE(all.size() == 2);
  CHECK(all[0].sandbox_id() == "");
  CHECK(st.find_inference("id1")->privacy() == "local-only");
  CHECK(st.provider_use("p") == "route '*' of the global table");
  try {
    st.delete_provider("p");
    FAIL("deleted a provider in use");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kFailedPrecondition);
    CHECK(std::string(e.what()).find("route '*' of the global table") != std::string::npos);
  }
  CHECK(st.delete_inference(""));
  CHECK_FALSE(st.delete_inference(""));
  CHECK(st.provider_use("p") == "route 'gpt-*' of sandbox id1");
  CHECK(st.delete_inference("id1"));
  CHECK(st.delete_provider("p"));
}
