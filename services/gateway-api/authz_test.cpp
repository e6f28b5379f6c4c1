// Scopes and ownership as pure decisions: every scope against every kind of route.
#include "services/gateway-api/authz.h"

#include <doctest/doctest.h>

#include <utility>
#include <vector>

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
Caller as(Scope s, const std::string& id = "aaaaaaaaaaaa") { return {id, "t-" + id, s}; }
bool ok(const Caller& c, const std::string& m, const std::string& route, std::optional<std::string> owner = std::nullopt) {
  return authorize(c, m, route, owner, "ref").allowed;
}
}  // namespace

TEST_CASE("scope names round-trip; anything else is refused") {
  for (Scope s : {Scope::kAdmin, Scope::kOperator, Scope::kCi, Scope::kReadOnly}) CHECK(parse_scope(scope_name(s)) == s);
  CHECK_FALSE(parse_scope("Admin"));
  CHECK_FALSE(parse_scope("readonly"));
  CHECK_FALSE(parse_scope(""));
}

TEST_CASE("admin may do everything, including tokens, audit and routes no rule names") {
  auto a = as(Scope::kAdmin);
  for (auto [m, r] : std::vector<std::pair<std::string, std::string>>{{"POST", "/v1/tokens"}, {"DELETE", "/v1/tokens/{token_id}"},
                                                                      {"GET", "/v1/audit"}, {"DELETE", "/v1/providers/{name}"},
                                                                      {"POST", "/v1/future-thing"}})
    CHECK(ok(a, m, r));
  CHECK(ok(a, "DELETE", "/v1/sandboxes/{sandbox_id}", std::string("someone-else")));
}

TEST_CASE("operator: sandboxes of any owner, policies, providers, inference; never tokens or audit") {
  auto o = as(Scope::kOperator);
  CHECK(ok(o, "DELETE", "/v1/sandboxes/{sandbox_id}", std::string("bbbbbbbbbbbb")));
  CHECK(ok(o, "PUT", "/v1/sandboxes/{sandbox_id}/policy", std::string("bbbbbbbbbbbb")));
  CHECK(ok(o, "POST", "/v1/sandboxes/{sandbox_id}/exec", std::string("")));  // a route added later
  CHECK(ok(o, "POST", "/v1/providers"));
  CHECK(ok(o, "PUT", "/v1/inference"));
  auto d = authorize(o, "POST", "/v1/tokens");
  CHECK_FALSE(d.allowed);
  CHECK(d.code == Code::kPermissionDenied);
  CHECK(d.reason.find("scope admin") != std::string::npos);
  CHECK(d.reason.find("operator") != std::string::npos);
  CHECK_FALSE(ok(o, "GET", "/v1/tokens"));
  CHECK_FALSE(ok(o, "GET", "/v1/audit"));
  CHECK_FALSE(ok(o, "POST", "/v1/future-thing"));
}

TEST_CASE("ci: creates and lists; its own sandboxes only, another's is not found; nothing else mutating") {
  auto c = as(Scope::kCi, "aaaaaaaaaaaa");
  CHECK(ok(c, "POST", "/v1/sandboxes"));
  CHECK(ok(c, "GET", "/v1/sandboxes"));
  CHECK(list_owner(c) == std::optional<std::string>("aaaaaaaaaaaa"));
  for (auto [m, r] : std::vector<std::pair<std::string, std::string>>{{"GET", "/v1/sandboxes/{sandbox_id}"},
                                                                      {"DELETE", "/v1/sandboxes/{sandbox_id}"},
                                                                      {"GET", "/v1/sandboxes/{sandbox_id}/logs"},
                                                                      {"PATCH", "/v1/sandboxes/{sandbox_id}/policy"},
                                                                      {"POST", "/v1/sandboxes/{sandbox_id}/exec"}}) {
    CHECK(ok(c, m, r, std::string("aaaaaaaaaaaa")));
    auto d = authorize(c, m, r, std::string("bbbbbbbbbbbb"), "theirs");
    CHECK_FALSE(d.allowed);
    CHECK(d.code == Code::kNotFound);  // not 403: ids and names of other jobs do not leak
    CHECK(d.reason == "no sandbox with id or name 'theirs'");
    // Created before tokens existed (no owner): not a ci token's either.
    CHECK_FALSE(ok(c, m, r, std::string("")));
  }
  CHECK(ok(c, "GET", "/v1/sandboxes/{sandbox_id}"));  // no such sandbox: the route answers its own 404
  CHECK(ok(c, "POST", "/v1/policies/validate"));
  CHECK(ok(c, "GET", "/v1/providers"));
  CHECK(ok(c, "GET", "/v1/status"));
  CHECK_FALSE(ok(c, "POST", "/v1/providers"));
  CHECK_FALSE(ok(c, "GET", "/v1/inference"));
  CHECK_FALSE(ok(c, "PUT", "/v1/inference"));
  CHECK_FALSE(ok(c, "POST", "/v1/tokens"));
}

TEST_CASE("read-only: GET only, never tokens or audit") {
  auto r = as(Scope::kReadOnly);
  CHECK(ok(r, "GET", "/v1/sandboxes"));
  CHECK(ok(r, "GET", "/v1/sandboxes/{sandbox_id}", std::string("bbbbbbbbbbbb")));
  CHECK(ok(r, "GET", "/v1/providers/{name}"));
  CHECK(ok(r, "GET", "/v1/inference"));
  CHECK_FALSE(list_owner(r));
  auto d = authorize(r, "POST", "/v1/sandboxes");
  CHECK_FALSE(d.allowed);
  CHECK(d.code == Code::kPermissionDenied);
  CHECK(d.reason.find("read-only") != std::string::npos);
  CHECK_FALSE(ok(r, "DELETE", "/v1/sandboxes/{sandbox_id}", std::string("aaaaaaaaaaaa")));
  CHECK_FALSE(ok(r, "PATCH", "/v1/providers/{name}"));
  CHECK_FALSE(ok(r, "GET", "/v1/tokens"));
  CHECK_FALSE(ok(r, "GET", "/v1/audit"));
}

TEST_CASE("route matching is by path segment") {
  CHECK(names_sandbox("/v1/sandboxes/{sandbox_id}"));
  CHECK(names_sandbox("/v1/sandboxes/{sandbox_id}/policy/versions"));
  CHECK_FALSE(names_sandbox("/v1/sandboxes"));
  CHECK_FALSE(names_sandbox("/v1/sandboxes/{sandbox_id}x"));
  // /v1/tokensX is not /v1/tokens: a route no rule names, admin only, but not "tokens" either.
  auto d = authorize(as(Scope::kOperator), "GET", "/v1/tokensX");
  CHECK(d.reason.find("no other scope") != std::string::npos);
  CHECK(is_mutating("POST"));
  CHECK(is_mutating("DELETE"));
  CHECK_FALSE(is_mutating("GET"));
}

TEST_CASE("pending policy proposals: operator and admin only, reading included") {
  for (auto [m, r] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/policies/{name}/pending"},
           {"POST", "/v1/policies/{name}/pending/{proposal_id}/approve"},
           {"POST", "/v1/policies/{name}/pending/{proposal_id}/reject"}}) {
    CAPTURE(r);
    CHECK(ok(as(Scope::kAdmin), m, r));
    CHECK(ok(as(Scope::kOperator), m, r));
    CHECK_FALSE(ok(as(Scope::kCi), m, r));
    auto d = authorize(as(Scope::kReadOnly), m, r);
    CHECK_FALSE(d.allowed);
    CHECK(d.reason.find("scope operator or admin") != std::string::npos);
  }
  CHECK(ok(as(Scope::kCi), "POST", "/v1/policies/validate"));  // unchanged: a check that changes nothing
}

TEST_CASE("events: every scope may watch (ci only its own, per sandbox by owner); nothing may POST there") {
  for (Scope s : {Scope::kOperator, Scope::kCi, Scope::kReadOnly}) {
    CHECK(ok(as(s), "GET", "/v1/events"));
    CHECK_FALSE(ok(as(s), "POST", "/v1/events"));
  }
  CHECK(list_owner(as(Scope::kCi, "cccccccccccc")) == std::optional<std::string>("cccccccccccc"));
  CHECK_FALSE(list_owner(as(Scope::kReadOnly)).has_value());
  CHECK(ok(as(Scope::kReadOnly), "GET", "/v1/sandboxes/{sandbox_id}/events", std::string("someone")));
  auto ci = as(Scope::kCi, "cccccccccccc");
  CHECK(ok(ci, "GET", "/v1/sandboxes/{sandbox_id}/events", std::string("cccccccccccc")));
  auto other = authorize(ci, "GET", "/v1/sandboxes/{sandbox_id}/events", std::string("dddddddddddd"), "x");
  CHECK_FALSE(other.allowed);
  CHECK(other.code == Code::kNotFound);
}
