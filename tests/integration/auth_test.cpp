// API tokens end to end, black box: the real gateway (auth on, as always in tests), REST with
// httplib and the bulwark CLI. Missing, garbage, expired and revoked tokens; scopes; one CI token
// against another's sandbox; the audit log; and no secret ever in a list or in the log.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
struct Reply {
  int status = 0;
  json body;
  std::string raw;
  httplib::Headers headers;
};

// One REST call with `token` ("" = no Authorization header at all).
Reply call(const Suite& s, const std::string& token, const std::string& method, const std::string& path,
           const json& body = nullptr) {
  httplib::Client c(s.gateway_url());
  c.set_read_timeout(30);
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  httplib::Result r = method == "GET"      ? c.Get(path, h)
                      : method == "DELETE" ? c.Delete(path, h)
                      : method == "PUT"    ? c.Put(path, h, body.dump(), "application/json")
                                           : c.Post(path, h, body.dump(), "application/json");
  REQUIRE_MESSAGE(r, method, " ", path, ": no answer");
  return {r->status, json::parse(r->body.empty() ? "null" : r->body, nullptr, false), r->body, r->headers};
}

std::string code_of(const Reply& r) { return r.body.is_object() && r.body.contains("error") ? r.body["error"].value("code", "") : ""; }

json make_token(const Suite& s, const std::string& name, const std::string& scope, int64_t expires_in_s = 0) {
  json body = {{"name", name}, {"scope", scope}};
  if (expires_in_s) body["expires_in_s"] = expires_in_s;
  auto r = call(s, s.admin_token(), "POST", "/v1/tokens", body);
  REQUIRE_MESSAGE(r.status == 201, r.raw);
  return r.body;
}

std::vector<std::string> names_listed(const Suite& s, const std::string& token) {
  auto r = call(s, token, "GET", "/v1/sandboxes");
  REQUIRE_MESSAGE(r.status == 200, r.raw);
  std::vector<std::string> out;
  for (const auto& sb : r.body["sandboxes"]) out.push_back(sb.value("name", ""));
  return out;
}

// The CLI with env entries added ("K=V"; "BULWARK_TOKEN=" unsets the suite's token for it).
ProcessResult bulwark_cli(const Suite& s, const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {}) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", s.gateway_url()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env = extra_env;
  auto overridden = [&](const std::string& entry) {
    for (const auto& x : extra_env)
      if (entry.compare(0, x.find('=') + 1, x, 0, x.find('=') + 1) == 0) return true;
    return false;
  };
  auto rest = environment_without(overridden);
  env.insert(env.end(), rest.begin(), rest.end());
  return run_process(argv, env);
}
}  // namespace

TEST_CASE("API tokens: authentication, scopes, ownership, revocation, audit, CLI") {
  Suite s;
  const std::string admin = s.admin_token();
  std::vector<std::string> secrets = {admin};

  // --- who: missing, garbage, expired -> 401 with WWW-Authenticate; /healthz stays open -----------
  auto none = call(s, "", "GET", "/v1/sandboxes");
  CHECK(none.status == 401);
  CHECK(code_of(none) == "unauthenticated");
  CHECK(httplib::detail::get_header_value(none.headers, "WWW-Authenticate", 0, "") == std::string("Bearer realm=\"bulwark\""));
  CHECK(call(s, "bwk_nonsense", "GET", "/v1/status").status == 401);
  CHECK(call(s, "bwk_000000000000_" + std::string(64, '0'), "GET", "/v1/providers").status == 401);
  CHECK(call(s, "", "POST", "/v1/sandboxes", {{"name", "anon"}}).status == 401);
  CHECK(call(s, "", "GET", "/healthz").status == 200);
  auto brief = make_token(s, "brief", "read-only", 1);
  secrets.push_back(brief["token"]);
  CHECK(call(s, brief["token"], "GET", "/v1/providers").status == 200);
  std::this_thread::sleep_for(1100ms);
  auto expired = call(s, brief["token"], "GET", "/v1/providers");
  CHECK(expired.status == 401);
  CHECK(expired.body["error"].value("message", "").find("expired") != std::string::npos);

  // --- scopes ------------------------------------------------------------------------------------
  auto ro = make_token(s, "viewer", "read-only");
  auto op = make_token(s, "operator-1", "operator");
  auto ci_a = make_token(s, "ci-a", "ci");
  auto ci_b = make_token(s, "ci-b", "ci");
  for (const auto& t : {ro, op, ci_a, ci_b}) secrets.push_back(t["token"]);
  const std::string A = ci_a["token"], B = ci_b["token"];

  auto ro_post = call(s, ro["token"], "POST", "/v1/sandboxes", {{"name", "ro-try"}});
  CHECK(ro_post.status == 403);
  CHECK(code_of(ro_post) == "permission_denied");
  CHECK(ro_post.body["error"].value("message", "").find("needs scope") != std::string::npos);
  auto op_token = call(s, op["token"], "POST", "/v1/tokens", {{"name", "escalate"}, {"scope", "admin"}});
  CHECK(op_token.status == 403);
  CHECK(op_token.body["error"].value("message", "").find("scope admin") != std::string::npos);
  CHECK(call(s, op["token"], "GET", "/v1/audit").status == 403);
  CHECK(call(s, A, "POST", "/v1/providers", {{"name", "p"}, {"type", "generic"}}).status == 403);

  // --- ownership: ci A and ci B ------------------------------------------------------------------
  auto sa = call(s, A, "POST", "/v1/sandboxes", {{"name", "job-a"}, {"command", {"sleep", "600"}}});
  REQUIRE_MESSAGE(sa.status == 202, sa.raw);
  CHECK(sa.body.value("owner", "") == ci_a["token_id"]);
  const std::string a_id = sa.body["sandbox_id"];
  auto sb = call(s, B, "POST", "/v1/sandboxes", {{"name", "job-b"}, {"command", {"sleep", "600"}}});
  REQUIRE_MESSAGE(sb.status == 202, sb.raw);
  // The owner comes from the token, never from the body.
  CHECK(call(s, B, "POST", "/v1/sandboxes", {{"name", "job-x"}, {"owner", ci_a["token_id"]}}).status == 400);

  for (const std::string& ref : {a_id, std::string("job-a")}) {
    auto get = call(s, B, "GET", "/v1/sandboxes/" + ref);
    CHECK(get.status == 404);
    CHECK(code_of(get) == "not_found");
    CHECK(call(s, B, "DELETE", "/v1/sandboxes/" + ref).status == 404);
    CHECK(call(s, B, "GET", "/v1/sandboxes/" + ref + "/logs").status == 404);
    CHECK(call(s, B, "GET", "/v1/sandboxes/" + ref + "/policy").status == 404);
    CHECK(call(s, B, "PUT", "/v1/sandboxes/" + ref + "/policy", {{"yaml", "version: 1\n"}}).status == 404);
  }
  // Not found looks the same as a sandbox that does not exist: no id leaks.
  CHECK(call(s, B, "GET", "/v1/sandboxes/" + a_id).raw ==
        call(s, B, "GET", "/v1/sandboxes/" + a_id).raw);
  CHECK(call(s, A, "GET", "/v1/sandboxes/" + a_id).status == 200);
  CHECK(call(s, A, "GET", "/v1/sandboxes/job-a/logs").status == 200);
  CHECK(names_listed(s, A) == std::vector<std::string>{"job-a"});
  CHECK(names_listed(s, B) == std::vector<std::string>{"job-b"});
  auto all = names_listed(s, admin);
  CHECK(std::find(all.begin(), all.end(), "job-a") != all.end());
  CHECK(std::find(all.begin(), all.end(), "job-b") != all.end());
  CHECK(call(s, op["token"], "GET", "/v1/sandboxes/job-a").status == 200);  // operators see every owner's
  CHECK(call(s, ro["token"], "GET", "/v1/sandboxes/job-b").status == 200);
  // An Idempotency-Key is per token: B's retry with A's key creates B's own sandbox.
  httplib::Client c(s.gateway_url());
  c.set_bearer_token_auth(A.c_str());
  auto ka = c.Post("/v1/sandboxes", {{"Idempotency-Key", "same-key"}}, json{{"name", "key-a"}, {"command", {"true"}}}.dump(),
                   "application/json");
  REQUIRE(ka);
  CHECK(ka->status == 202);
  c.set_bearer_token_auth(B.c_str());
  auto kb = c.Post("/v1/sandboxes", {{"Idempotency-Key", "same-key"}}, json{{"name", "key-a"}, {"command", {"true"}}}.dump(),
                   "application/json");
  REQUIRE(kb);
  CHECK(kb->status == 409);  // the name is A's; A's answer is not replayed to B
  CHECK(kb->body.find(json::parse(ka->body).value("sandbox_id", "?")) == std::string::npos);

  // B deletes its own; then B is revoked and refused at once.
  CHECK(call(s, B, "DELETE", "/v1/sandboxes/job-b").status < 300);
  auto revoked = call(s, admin, "DELETE", "/v1/tokens/" + ci_b["token_id"].get<std::string>());
  REQUIRE_MESSAGE(revoked.status == 200, revoked.raw);
  CHECK(revoked.body.contains("revoked_at"));
  auto after = call(s, B, "GET", "/v1/sandboxes");
  CHECK(after.status == 401);
  CHECK(after.body["error"].value("message", "").find("revoked") != std::string::npos);

  // --- the token list and the audit log ----------------------------------------------------------
  auto tokens = call(s, admin, "GET", "/v1/tokens");
  REQUIRE(tokens.status == 200);
  CHECK(tokens.body["tokens"].size() >= 6);
  for (const auto& t : tokens.body["tokens"]) CHECK(t.value("token", "") == "");
  for (const auto& secret : secrets) {
    CHECK(tokens.raw.find(secret) == std::string::npos);
    CHECK(tokens.raw.find(secret.substr(secret.rfind('_') + 1)) == std::string::npos);
  }
  auto audit = call(s, admin, "GET", "/v1/audit?limit=1000");
  REQUIRE(audit.status == 200);
  auto find = [&](const std::function<bool(const json&)>& pred) {
    for (const auto& e : audit.body["entries"])
      if (pred(e)) return e;
    return json();
  };
  auto create_a = find([&](const json& e) { return e["method"] == "POST" && e["path"] == "/v1/sandboxes" && e["token_id"] == ci_a["token_id"]; });
  REQUIRE_MESSAGE(create_a.is_object(), audit.raw);
  CHECK(create_a["status"] == 202);
  CHECK(create_a["result"] == "ok");
  CHECK(create_a["sandbox_id"] == a_id);
  CHECK(create_a["token_name"] == "ci-a");
  CHECK(create_a["scope"] == "ci");
  CHECK_FALSE(create_a.value("request_id", "").empty());
  CHECK_FALSE(create_a.value("remote_addr", "").empty());
  auto denied = find([&](const json& e) { return e["token_id"] == ro["token_id"] && e["method"] == "POST"; });
  REQUIRE(denied.is_object());
  CHECK(denied["status"] == 403);
  CHECK(denied["result"] == "permission_denied");
  auto cross = find([&](const json& e) { return e["token_id"] == ci_b["token_id"] && e["method"] == "DELETE" && e["status"] == 404; });
  REQUIRE(cross.is_object());
  CHECK(cross["result"] == "not_found");
  auto anon = find([&](const json& e) { return e["status"] == 401 && e["method"] == "POST"; });
  REQUIRE(anon.is_object());
  CHECK(anon["token_id"] == "");
  CHECK(find([&](const json& e) { return e["method"] == "GET"; }).is_null());  // reads are not audited

  // --- the CLI -----------------------------------------------------------------------------------
  auto made = bulwark_cli(s, {"token", "create", "--name", "cli-ci", "--scope", "ci", "--expires", "1h"});
  REQUIRE_MESSAGE(made.code == 0, made.err);
  std::string cli_token = made.out.substr(0, made.out.find('\n'));
  CHECK(cli_token.starts_with("bwk_"));
  CHECK(made.err.find("only time it is shown") != std::string::npos);
  secrets.push_back(cli_token);
  auto listed = bulwark_cli(s, {"token", "list"});
  CHECK(listed.code == 0);
  CHECK(listed.out.find("cli-ci") != std::string::npos);
  CHECK(listed.out.find("revoked") != std::string::npos);  // ci-b
  CHECK(listed.out.find(cli_token) == std::string::npos);
  // Its token from --token, from BULWARK_TOKEN, from --token-file; none -> exit 7, wrong scope -> 7.
  CHECK(bulwark_cli(s, {"--token", cli_token, "sandbox", "list"}, {"BULWARK_TOKEN="}).code == 0);
  std::string tf = s.file("cli.token");
  { std::ofstream(tf) << cli_token << "\n"; }
  CHECK(bulwark_cli(s, {"--token-file", tf, "sandbox", "list", "-o", "json"}, {"BULWARK_TOKEN="}).out.find("job-a") == std::string::npos);
  auto no_token = bulwark_cli(s, {"sandbox", "list"}, {"BULWARK_TOKEN="});
  CHECK(no_token.code == 7);
  CHECK(no_token.err.find("no token sent") != std::string::npos);
  auto wrong_scope = bulwark_cli(s, {"token", "list"}, {"BULWARK_TOKEN=" + cli_token});
  CHECK(wrong_scope.code == 7);
  CHECK(wrong_scope.err.find("scope admin") != std::string::npos);
  std::string cli_id = cli_token.substr(4, 12);
  auto rv = bulwark_cli(s, {"token", "revoke", cli_id});
  CHECK_MESSAGE(rv.code == 0, rv.err);
  CHECK(bulwark_cli(s, {"sandbox", "list"}, {"BULWARK_TOKEN=" + cli_token}).code == 7);
  CHECK(bulwark_cli(s, {"token", "revoke", "ffffffffffff"}).code == 3);

  // --- cost: one SQLite lookup per request ---------------------------------------------------------
  httplib::Client timed(s.gateway_url());
  timed.set_bearer_token_auth(admin.c_str());
  auto time_of = [&](const std::string& path, int n) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) REQUIRE(timed.Get(path));
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
  };
  double open_us = time_of("/healthz", 200), authed_us = time_of("/v1/providers", 200);
  MESSAGE("per request, keep-alive: /healthz (no token) " << open_us << " us, GET /v1/providers (token checked) " << authed_us
                                                          << " us");

  // --- no secret in the gateway's log -------------------------------------------------------------
  std::string log = read_file(s.file("gateway-api.log"));
  CHECK(log.find("audit {") != std::string::npos);
  for (const auto& secret : secrets) CHECK_MESSAGE(log.find(secret.substr(secret.rfind('_') + 1)) == std::string::npos, "secret in the log");
}
