// Pagination tokens and list filters (pure), and the store's pages against a real SQLite file.
#include "services/gateway-api/paging.h"

#include <doctest/doctest.h>

#include "services/gateway-api/lifecycle.h"
#include "services/gateway-api/store.h"
#include "shared/error.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
std::string field_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    return e.field();
  }
  return "(accepted)";
}

v1::Sandbox record(const std::string& id, int64_t created_ms, v1::SandboxPhase phase, std::map<std::string, std::string> labels = {}) {
  v1::Sandbox s;
  s.set_sandbox_id(id);
  s.set_name("n-" + id);
  s.mutable_created_at()->set_seconds(created_ms / 1000);
  s.mutable_created_at()->set_nanos(static_cast<int32_t>(created_ms % 1000) * 1000000);
  s.set_phase(phase);
  for (const auto& [k, v] : labels) (*s.mutable_spec()->mutable_labels())[k] = v;
  return s;
}
}  // namespace

TEST_CASE("base64url round-trips any bytes and refuses other characters") {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"), std::string("\0\xff|x", 4)})
    CHECK(base64url_decode(base64url_encode(s)) == s);
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK_FALSE(base64url_decode("ab+c"));
  CHECK_FALSE(base64url_decode("ab=="));
}

TEST_CASE("limit: 1 to 1000, default 100, anything else names the field") {
  CHECK(parse_limit(std::nullopt) == kDefaultPageSize);
  CHECK(parse_limit("1") == 1);
  CHECK(parse_limit("1000") == 1000);
  for (const char* bad : {"0", "1001", "-1", "ten", "", "1e3", " 5", "99999999999"})
    CHECK_MESSAGE(field_of([&] { parse_limit(std::string(bad)); }) == "limit", bad);
}

TEST_CASE("filters: phases and labels parsed, normalised, matched") {
  CHECK(parse_phase("READY") == v1::READY);
  CHECK(field_of([] { parse_phase("ready"); }) == "phase");
  CHECK(field_of([] { parse_phase("PHASE_UNSPECIFIED"); }) == "phase");
  try {
    parse_phase("RUNNING");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("PENDING, SCHEDULED, STARTING, READY, EXITED, STOPPING, DELETED, FAILED") != std::string::npos);
  }
  CHECK(parse_label("team=ml") == std::pair<std::string, std::string>{"team", "ml"});
  CHECK(parse_label("a=b=c") == std::pair<std::string, std::string>{"a", "b=c"});
  CHECK(parse_label("empty=") == std::pair<std::string, std::string>{"empty", ""});
  CHECK(field_of([] { parse_label("team"); }) == "label");
  CHECK(field_of([] { parse_label("=x"); }) == "label");

  auto f = make_filter(false, {"READY", "EXITED", "READY"}, {"team=ml", "env=ci"});
  CHECK(f.phases == std::vector<v1::SandboxPhase>{v1::READY, v1::EXITED});
  CHECK_FALSE(f.include_deleted);
  CHECK(f.matches(record("a", 1, v1::READY, {{"team", "ml"}, {"env", "ci"}, {"x", "y"}})));
  CHECK_FALSE(f.matches(record("a", 1, v1::READY, {{"team", "ml"}})));
  CHECK_FALSE(f.matches(record("a", 1, v1::PENDING, {{"team", "ml"}, {"env", "ci"}})));
  CHECK_FALSE(make_filter(false, {}, {}).matches(record("a", 1, v1::DELETED)));
  CHECK(make_filter(true, {}, {}).matches(record("a", 1, v1::DELETED)));
  CHECK(make_filter(false, {"DELETED"}, {}).matches(record("a", 1, v1::DELETED)));  // asking for DELETED implies all

  // The same filter in any spelling has one fingerprint; different filters differ.
  CHECK(make_filter(false, {"EXITED", "READY"}, {"env=ci", "team=ml"}).fingerprint() == f.fingerprint());
  CHECK(make_filter(true, {"EXITED", "READY"}, {"env=ci", "team=ml"}).fingerprint() != f.fingerprint());
  CHECK(make_filter(false, {}, {"a=b=c"}).fingerprint() != make_filter(false, {}, {"a=b", "c="}).fingerprint());
}

TEST_CASE("page tokens: opaque, round-trip, bound to their filter") {
  auto f = make_filter(false, {"READY"}, {"team=ml"});
  std::string t = encode_sandbox_token({1700000000123, "00ff00ff00ff00ff"}, f);
  CHECK(t.find("00ff") == std::string::npos);  // not readable as is
  auto c = decode_sandbox_token(t, f);
  CHECK(c.created_ms == 1700000000123);
  CHECK(c.sandbox_id == "00ff00ff00ff00ff");
  CHECK(field_of([&] { decode_sandbox_token(t, make_filter(false, {}, {})); }) == "page_token");
  CHECK(field_of([&] { decode_sandbox_token("!!", f); }) == "page_token");
  CHECK(field_of([&] { decode_sandbox_token(base64url_encode("s1|x|id|" + f.fingerprint()), f); }) == "page_token");
  CHECK(field_of([&] { decode_sandbox_token(std::string(300, 'A'), f); }) == "page_token");
  CHECK(field_of([&] { decode_sandbox_token(encode_provider_token("x"), f); }) == "page_token");

  CHECK(decode_provider_token(encode_provider_token("claude")) == "claude");
  CHECK(field_of([] { decode_provider_token("zz"); }) == "page_token");
  CHECK(field_of([&] { decode_provider_token(t); }) == "page_token");
}

TEST_CASE("Store::page walks (created_ms, sandbox_id) with a cursor; label filters hold across pages") {
  testing::TempDir dir;
  Store st(dir.file("g.db"));
  bool created = false;
  // Two share a millisecond: sandbox_id breaks the tie.
  st.insert(record("b", 1000, v1::READY, {{"team", "ml"}}), "", &created);
  st.insert(record("a", 1000, v1::READY), "", &created);
  st.insert(record("c", 2000, v1::EXITED, {{"team", "ml"}}), "", &created);
  st.insert(record("d", 3000, v1::DELETED, {{"team", "ml"}}), "", &created);
  st.insert(record("e", 4000, v1::READY, {{"team", "ml"}}), "", &created);

  auto ids = [](const std::vector<v1::Sandbox>& v) {
    std::string s;
    for (const auto& x : v) s += x.sandbox_id();
    return s;
  };
  bool more = false;
  auto all = make_filter(false, {}, {});
  CHECK(ids(st.page(all, std::nullopt, 10, &more)) == "abce");
  CHECK_FALSE(more);
  CHECK(ids(st.page(all, std::nullopt, 2, &more)) == "ab");
  CHECK(more);
  CHECK(ids(st.page(all, SandboxCursor{1000, "b"}, 2, &more)) == "ce");
  CHECK_FALSE(more);
  CHECK(ids(st.page(make_filter(true, {}, {}), SandboxCursor{1000, "b"}, 2, &more)) == "cd");
  CHECK(more);
  auto ml = make_filter(false, {}, {"team=ml"});
  CHECK(ids(st.page(ml, std::nullopt, 2, &more)) == "bc");
  CHECK(more);
  CHECK(ids(st.page(ml, SandboxCursor{2000, "c"}, 2, &more)) == "e");
  CHECK_FALSE(more);
  CHECK(ids(st.page(make_filter(false, {"READY"}, {}), std::nullopt, 10, &more)) == "abe");
  CHECK(ids(st.page(make_filter(false, {"DELETED"}, {}), std::nullopt, 10, &more)) == "d");

  auto counts = st.count_by_phase();
  CHECK(counts[v1::READY] == 3);
  CHECK(counts[v1::DELETED] == 1);
  CHECK(counts.count(v1::PENDING) == 0);
}
