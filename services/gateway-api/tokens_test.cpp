// Tokens against a real SQLite store: hashing, parsing, expiry, revocation at once, bootstrap,
// and the audit log's rows and lines.
#include "services/gateway-api/tokens.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "services/gateway-api/audit_log.h"
#include "shared/error.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
int64_t now_ms() { return to_millis(now_timestamp()); }
v1::CreateTokenRequest req(const std::string& name, const std::string& scope, int64_t expires = 0) {
  v1::CreateTokenRequest r;
  r.set_name(name);
  r.set_scope(scope);
  r.set_expires_in_s(expires);
  return r;
}
Code code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("no error");
  return Code::kInternal;
}
std::string field_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.field();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("token text: bwk_<12 hex>_<64 hex>, nothing else") {
  std::string id(12, 'a'), secret(64, '0');
  auto p = parse_token("bwk_" + id + "_" + secret);
  REQUIRE(p);
  CHECK(p->token_id == id);
  CHECK(p->secret == secret);
  CHECK_FALSE(parse_token("bwk_" + id + "_" + secret + "0"));
  CHECK_FALSE(parse_token("bwk_" + id + "_" + std::string(64, 'G')));
  CHECK_FALSE(parse_token("bwk_" + id.substr(1) + "_" + secret));
  CHECK_FALSE(parse_token("bwx_" + id + "_" + secret));
  CHECK_FALSE(parse_token("bwk_" + id + secret));
  CHECK_FALSE(parse_token(""));
  // SHA-256 of "abc".
  CHECK(hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("create shows the token once, stores only its hash; authenticate finds the caller") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  Tokens tokens(store);
  auto t = tokens.create(req("ci-main", "ci"), "creator0000a");
  REQUIRE(parse_token(t.token()));
  CHECK(parse_token(t.token())->token_id == t.token_id());
  CHECK(t.scope() == "ci");
  CHECK(t.created_by() == "creator0000a");
  CHECK_FALSE(t.has_expires_at());
  auto row = store.find_token(t.token_id());
  REQUIRE(row);
  std::string secret = parse_token(t.token())->secret;
  CHECK(row->secret_sha256 == hash_secret(secret));
  CHECK(row->secret_sha256.find(secret) == std::string::npos);
  // Nothing the list gives out carries the secret or its hash.
  for (const auto& r : tokens.list()) {
    auto j = token_json(r);
    CHECK(j.token().empty());
    CHECK(j.DebugString().find(secret) == std::string::npos);
    CHECK(j.DebugString().find(row->secret_sha256) == std::string::npos);
  }
  auto c = tokens.authenticate("Bearer " + t.token(), now_ms());
  CHECK(c.token_id == t.token_id());
  CHECK(c.name == "ci-main");
  CHECK(c.scope == Scope::kCi);
  CHECK(tokens.authenticate("bearer " + t.token(), now_ms()).token_id == t.token_id());  // the scheme is case-insensitive
  CHECK(store.find_token(t.token_id())->last_used_ms > 0);
}

TEST_CASE("refused tokens: missing, not bearer, garbage, wrong secret, expired, revoked (at once)") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  Tokens tokens(store);
  auto admin = tokens.create(req("root", "admin"), "bootstrap");
  auto t = tokens.create(req("short", "read-only", 60), admin.token_id());
  REQUIRE(t.has_expires_at());
  auto unauth = [&](const std::string& header, int64_t at) { return code_of([&] { tokens.authenticate(header, at); }); };
  CHECK(unauth("", now_ms()) == Code::kUnauthenticated);
  CHECK(unauth("Basic dXNlcjpwYXNz", now_ms()) == Code::kUnauthenticated);
  CHECK(unauth("Bearer nonsense", now_ms()) == Code::kUnauthenticated);
  std::string wrong = t.token();
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  CHECK(unauth("Bearer " + wrong, now_ms()) == Code::kUnauthenticated);
  CHECK(unauth("Bearer bwk_000000000000_" + std::string(64, '0'), now_ms()) == Code::kUnauthenticated);
  // Expired: 60 s after creation it stops working.
  CHECK(tokens.authenticate("Bearer " + t.token(), now_ms() + 59'000).token_id == t.token_id());
  CHECK(unauth("Bearer " + t.token(), now_ms() + 61'000) == Code::kUnauthenticated);
  try {
    tokens.authenticate("Bearer " + t.token(), now_ms() + 61'000);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("expired") != std::string::npos);
  }
  // Revoked: the next request is refused; revoking again keeps the first time.
  auto r = tokens.revoke(t.token_id());
  CHECK(r.revoked_ms > 0);
  CHECK(unauth("Bearer " + t.token(), now_ms()) == Code::kUnauthenticated);
  CHECK(tokens.revoke(t.token_id()).revoked_ms == r.revoked_ms);
  CHECK(code_of([&] { tokens.revoke("ffffffffffff"); }) == Code::kNotFound);
  // The last usable admin token cannot be revoked: nobody could manage tokens any more.
  CHECK(code_of([&] { tokens.revoke(admin.token_id()); }) == Code::kFailedPrecondition);
  auto admin2 = tokens.create(req("root2", "admin"), admin.token_id());
  CHECK(tokens.revoke(admin.token_id()).revoked_ms > 0);
  CHECK(unauth("Bearer " + admin.token(), now_ms()) == Code::kUnauthenticated);
  CHECK(tokens.authenticate("Bearer " + admin2.token(), now_ms()).scope == Scope::kAdmin);
}

TEST_CASE("the cost of authenticating a request: one indexed SQLite lookup and a SHA-256") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  Tokens tokens(store);
  for (int i = 0; i < 50; ++i) tokens.create(req("t" + std::to_string(i), "ci"), "");
  auto t = tokens.create(req("timed", "ci"), "");
  const std::string header = "Bearer " + t.token();
  const int n = 2000;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) REQUIRE(tokens.authenticate(header, now_ms()).token_id == t.token_id());
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
  MESSAGE("Tokens::authenticate: " << us << " us per request (" << n << " requests, 51 tokens)");
  CHECK(us < 5000);  // generous: a sanitizer build on a busy 2-core host
}

TEST_CASE("create validates name, scope and expiry, naming the field") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  Tokens tokens(store);
  CHECK(field_of([&] { tokens.create(req("", "ci"), ""); }) == "name");
  CHECK(field_of([&] { tokens.create(req("has space", "ci"), ""); }) == "name");
  CHECK(field_of([&] { tokens.create(req(std::string(65, 'a'), "ci"), ""); }) == "name");
  CHECK(field_of([&] { tokens.create(req("ok", "root"), ""); }) == "scope");
  CHECK(field_of([&] { tokens.create(req("ok", "ci", -1), ""); }) == "expires_in_s");
  CHECK(field_of([&] { tokens.create(req("ok", "ci", kMaxTokenLifetimeS + 1), ""); }) == "expires_in_s");
  CHECK(tokens.list().empty());
}

TEST_CASE("bootstrap: an admin token in a 0600 file on the first start only") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  Tokens tokens(store);
  std::string file = default_admin_token_file(dir.file("g.db"));
  CHECK(file == dir.file("admin.token"));
  std::ofstream(file) << "stale\n";  // from an earlier database: replaced
  REQUIRE(tokens.bootstrap(file));
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string text = testing::read_file(file);
  REQUIRE(text.size() > 1);
  auto c = tokens.authenticate("Bearer " + text.substr(0, text.size() - 1), now_ms());
  CHECK(c.scope == Scope::kAdmin);
  CHECK(c.name == "bootstrap-admin");
  CHECK_FALSE(tokens.bootstrap(file));  // tokens exist: nothing new
  CHECK(tokens.list().size() == 1);
  CHECK(default_admin_token_file("g.db") == "./admin.token");
}

TEST_CASE("audit log: rows in order, since/limit, one JSON line each") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  AuditLog audit(store);
  for (int i = 0; i < 5; ++i)
    audit.record(AuditRow{0, 1000 + i, "aaaaaaaaaaaa", "ci-main", "ci", "DELETE", "/v1/sandboxes/x" + std::to_string(i),
                          "sb" + std::to_string(i), i == 4 ? 404 : 200, i == 4 ? "not_found" : "ok", "127.0.0.1", "rid"});
  auto all = audit.list(0, 100);
  REQUIRE(all.entries_size() == 5);
  CHECK(all.entries(0).seq() < all.entries(1).seq());
  CHECK(all.entries(4).result() == "not_found");
  CHECK(all.entries(4).status() == 404);
  auto after = audit.list(static_cast<int64_t>(all.entries(2).seq()), 1);
  REQUIRE(after.entries_size() == 1);
  CHECK(after.entries(0).path() == "/v1/sandboxes/x3");
  auto j = nlohmann::json::parse(audit_json(AuditRow{7, 1, "id", "n", "ci", "POST", "/v1/a\nb", "", 201, "ok", "::1", "r"}));
  CHECK(j["path"] == "/v1/a\nb");
  CHECK(j["seq"] == 7);
  CHECK(audit_json(AuditRow{7, 1, "id", "n", "ci", "POST", "/v1/a\nb", "", 201, "ok", "::1", "r"}).find('\n') == std::string::npos);
}
