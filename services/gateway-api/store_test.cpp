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
