// The REST contract: the running gateway against docs/openapi.yaml. Every documented operation is
// called on the real suite (a success and at least one error each); every answer, status and body,
// is written to a file that tests/integration/openapi/validate.mjs checks with Ajv against the
// schema the spec gives for that path, method and status. The routes the gateway registers
// (route_specs(), which install() enforces) must be exactly the documented ones.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "bulwark/v1/sandbox.pb.h"
#include "services/gateway-api/http_api.h"
#include "shared/bus.h"
#include "shared/subjects.h"
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

// Calls a gateway and keeps every answer for the validator.
class Recorder {
 public:
  explicit Recorder(json* observations) : out_(observations) {}
  // Sent as Authorization: Bearer unless the call names its own Authorization header.
  std::string token;

  // path: the spec's template (/v1/sandboxes/{sandbox_id}); url: what is requested. body: sent raw
  // (nullopt: no body).
  Reply call(const std::string& base_url, const std::string& method, const std::string& path, const std::string& url,
             const std::optional<std::string>& body = std::nullopt, const httplib::Headers& headers = {}) {
    httplib::Client c(base_url);
    c.set_read_timeout(30);
    if (!token.empty() && !headers.count("Authorization")) c.set_bearer_token_auth(token.c_str());
    const std::string b = body.value_or("");
    httplib::Result r = method == "GET"      ? c.Get(url, headers)
                        : method == "DELETE" ? c.Delete(url, headers)
                        : method == "POST"   ? c.Post(url, headers, b, "application/json")
                        : method == "PUT"    ? c.Put(url, headers, b, "application/json")
                                             : c.Patch(url, headers, b, "application/json");
    REQUIRE_MESSAGE(r, method, " ", url, ": no answer (", httplib::to_string(r.error()), ")");
    json hs = json::object();
    for (const auto& [k, v] : r->headers) {
      std::string lower = k;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
      hs[lower] = v;
    }
    out_->push_back({{"method", method}, {"path", path}, {"url", url}, {"status", r->status}, {"headers", hs}, {"body", r->body}});
    return {r->status, json::parse(r->body.empty() ? "null" : r->body, nullptr, false), r->body, r->headers};
  }

 private:
  json* out_;
};

// A call whose status must be `status`; the body is checked by the validator, not here.
Reply expect(Recorder& rec, const std::string& base, int status, const std::string& method, const std::string& path,
             const std::string& url, const std::optional<json>& body = std::nullopt, const httplib::Headers& headers = {}) {
  auto r = rec.call(base, method, path, url, body ? std::optional(body->dump()) : std::nullopt, headers);
  CHECK_MESSAGE(r.status == status, method, " ", url, ": expected ", status, ", got ", r.status, " ", r.raw);
  return r;
}

const std::string kPolicyV1 = "version: 1\n";
}  // namespace

TEST_CASE("the running gateway matches docs/openapi.yaml: every route documented, every answer valid") {
  const std::string dir = source_dir() + "/tests/integration/openapi";
  require_binary("node", "nodejs");
  REQUIRE_MESSAGE(std::filesystem::exists(dir + "/node_modules/ajv/package.json"),
                  "the validator's npm packages are missing: run scripts/install-deps (npm ci in ", dir, ")");

  json observations = json::array();
  Recorder rec(&observations);
  Suite suite;
  const std::string gw = suite.gateway_url();
  rec.token = suite.admin_token();
  auto t0 = std::chrono::steady_clock::now();

  // --- operations ---------------------------------------------------------------------------
  expect(rec, gw, 200, "GET", "/healthz", "/healthz");
  // The gateway hears the driver's heartbeats itself.
  json status;
  bool driver_seen = wait_until([&] {
    status = rec.call(gw, "GET", "/v1/status", "/v1/status?timeout_ms=300").body;
    return status.is_object() && !status.value("drivers", json::array()).empty();
  }, 10s);
  CHECK_MESSAGE(driver_seen, status.dump(2));
  expect(rec, gw, 400, "GET", "/v1/status", "/v1/status?timeout_ms=0");

  // --- sandboxes ----------------------------------------------------------------------------
  json spec = {{"name", "contract"}, {"labels", {{"suite", "openapi"}}}, {"command", {"sh", "-c", "echo hello; sleep 600"}}};
  httplib::Headers key = {{"Idempotency-Key", "contract-1"}};
  auto created = expect(rec, gw, 202, "POST", "/v1/sandboxes", "/v1/sandboxes", spec, key);
  std::string id = created.body.value("sandbox_id", "");
  REQUIRE_MESSAGE(!id.empty(), created.raw);
  auto replay = expect(rec, gw, 202, "POST", "/v1/sandboxes", "/v1/sandboxes", spec, key);
  CHECK(replay.raw == created.raw);
  expect(rec, gw, 409, "POST", "/v1/sandboxes", "/v1/sandboxes", json{{"name", "other"}}, key);
  expect(rec, gw, 409, "POST", "/v1/sandboxes", "/v1/sandboxes", spec);  // the name is taken
  CHECK(rec.call(gw, "POST", "/v1/sandboxes", "/v1/sandboxes", std::string("{\"name\": ")).status == 400);
  expect(rec, gw, 400, "POST", "/v1/sandboxes", "/v1/sandboxes", json{{"colour", "red"}});
  expect(rec, gw, 413, "POST", "/v1/sandboxes", "/v1/sandboxes", json{{"policy", std::string(1100000, 'x')}});
  auto second = expect(rec, gw, 202, "POST", "/v1/sandboxes", "/v1/sandboxes",
                       json{{"name", "contract-2"}, {"labels", {{"suite", "openapi"}}}, {"command", {"true"}}});
  suite.wait_phase(id, {"READY"});

  auto page1 = expect(rec, gw, 200, "GET", "/v1/sandboxes", "/v1/sandboxes?label=suite=openapi&limit=1");
  std::string token = page1.body.value("next_page_token", "");
  CHECK_FALSE(token.empty());
  auto page2 = expect(rec, gw, 200, "GET", "/v1/sandboxes", "/v1/sandboxes?label=suite=openapi&limit=1&page_token=" + token);
  CHECK(page2.body["sandboxes"].size() == 1);
  expect(rec, gw, 200, "GET", "/v1/sandboxes", "/v1/sandboxes?phase=READY&phase=EXITED&all=true");
  expect(rec, gw, 400, "GET", "/v1/sandboxes", "/v1/sandboxes?limit=0");
  expect(rec, gw, 400, "GET", "/v1/sandboxes", "/v1/sandboxes?phase=RUNNING");
  expect(rec, gw, 400, "GET", "/v1/sandboxes", "/v1/sandboxes?label=suite=openapi&page_token=" + token + "x");
  expect(rec, gw, 400, "GET", "/v1/sandboxes", "/v1/sandboxes?state=READY");

  expect(rec, gw, 200, "GET", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/" + id);
  expect(rec, gw, 200, "GET", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/contract");
  expect(rec, gw, 404, "GET", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/no-such-sandbox");

  wait_until([&] {
    auto l = rec.call(gw, "GET", "/v1/sandboxes/{sandbox_id}/logs", "/v1/sandboxes/" + id + "/logs?stream=stdout");
    return l.status == 200 && !l.body.value("lines", json::array()).empty();
  }, 10s);
  expect(rec, gw, 200, "GET", "/v1/sandboxes/{sandbox_id}/logs", "/v1/sandboxes/" + id + "/logs?tail=5");
  expect(rec, gw, 400, "GET", "/v1/sandboxes/{sandbox_id}/logs", "/v1/sandboxes/" + id + "/logs?stream=bogus");

  // --- exec and files (docs/exec.md) ----------------------------------------------------------
  const std::string exec_path = "/v1/sandboxes/{sandbox_id}/exec", files_path = "/v1/sandboxes/{sandbox_id}/files";
  expect(rec, gw, 200, "POST", exec_path, "/v1/sandboxes/" + id + "/exec", json{{"command", {"sh", "-c", "echo hi; exit 2"}}});
  expect(rec, gw, 400, "POST", exec_path, "/v1/sandboxes/" + id + "/exec", json{{"command", json::array()}});
  expect(rec, gw, 404, "POST", exec_path, "/v1/sandboxes/no-such-sandbox/exec", json{{"command", {"true"}}});
  {
    TempDir files("bulwark-openapi-files");
    std::filesystem::create_directories(files.file("d"));
    std::ofstream(files.file("d/f.txt")) << "contract\n";
    REQUIRE(Process::spawn({.argv = {"tar", "-c", "-f", files.file("d.tar"), "-C", files.path(), "d"}}).wait() == 0);
    std::string tar = read_file(files.file("d.tar"));
    CHECK(rec.call(gw, "PUT", files_path, "/v1/sandboxes/" + id + "/files?path=/tmp", tar).status == 200);
    CHECK(rec.call(gw, "PUT", files_path, "/v1/sandboxes/" + id + "/files?path=/usr", tar).status == 403);
  }
  expect(rec, gw, 200, "GET", files_path, "/v1/sandboxes/" + id + "/files?path=/tmp/d/f.txt");
  expect(rec, gw, 404, "GET", files_path, "/v1/sandboxes/" + id + "/files?path=/tmp/none");
  expect(rec, gw, 400, "GET", files_path, "/v1/sandboxes/" + id + "/files?path=relative");
  expect(rec, gw, 404, "GET", "/v1/sandboxes/{sandbox_id}/logs", "/v1/sandboxes/no-such-sandbox/logs");

  // --- policies -----------------------------------------------------------------------------
  const std::string pol = "/v1/sandboxes/{sandbox_id}/policy";
  expect(rec, gw, 200, "GET", pol, "/v1/sandboxes/" + id + "/policy");
  expect(rec, gw, 200, "GET", pol, "/v1/sandboxes/" + id + "/policy?version=1");
  expect(rec, gw, 404, "GET", pol, "/v1/sandboxes/" + id + "/policy?version=99");
  expect(rec, gw, 400, "GET", pol, "/v1/sandboxes/" + id + "/policy?version=first");
  expect(rec, gw, 200, "PUT", pol, "/v1/sandboxes/" + id + "/policy", json{{"yaml", kPolicyV1}, {"reason", "contract"}});
  expect(rec, gw, 400, "PUT", pol, "/v1/sandboxes/" + id + "/policy", json{{"reason", "no yaml"}});
  expect(rec, gw, 404, "PUT", pol, "/v1/sandboxes/no-such-sandbox/policy", json{{"yaml", kPolicyV1}});
  json add = {{"operations", {{{"add_endpoint",
                                {{"network_policy", "example"},
                                 {"endpoint_yaml", "{host: api.example.com, port: 443}"},
                                 {"binaries", {"/usr/bin/curl"}}}}}}},
              {"dry_run", true}};
  auto dry = expect(rec, gw, 200, "PATCH", pol, "/v1/sandboxes/" + id + "/policy", add);
  CHECK(dry.body.value("yaml", "").find("api.example.com") != std::string::npos);
  expect(rec, gw, 400, "PATCH", pol, "/v1/sandboxes/" + id + "/policy", json{{"operations", json::array()}});
  expect(rec, gw, 200, "GET", pol + "/versions", "/v1/sandboxes/" + id + "/policy/versions");
  expect(rec, gw, 404, "GET", pol + "/versions", "/v1/sandboxes/no-such-sandbox/policy/versions");
  expect(rec, gw, 200, "POST", "/v1/policies/validate", "/v1/policies/validate", json{{"yaml", kPolicyV1}});
  expect(rec, gw, 200, "POST", "/v1/policies/validate", "/v1/policies/validate", json{{"yaml", "version: 1\ncolour: red\n"}});
  expect(rec, gw, 400, "POST", "/v1/policies/validate", "/v1/policies/validate", json::object());
  expect(rec, gw, 404, "POST", "/v1/policies/validate", "/v1/policies/validate",
         json{{"yaml", kPolicyV1}, {"sandbox_id", "no-such-sandbox"}});

  // --- pending proposals (the approval flow; docs/policy.md) ------------------------------------
  {
    // Two denials as a supervisor reports them, on the sandbox's log subject.
    auto bus = Bus::connect({suite.nats_url(), "openapi-test"});
    for (uint32_t port : {443u, 8443u}) {
      v1::LogLine l;
      l.set_sandbox_id(id);
      l.set_stream("denial");
      l.set_line("denied: proxy CONNECT api.example.com:" + std::to_string(port));
      auto* d = l.mutable_denial();
      d->set_layer("proxy");
      d->set_binary("/bin/busybox");
      d->set_host("api.example.com");
      d->set_port(port);
      d->set_method("CONNECT");
      d->set_rule("bulwark:default-deny");
      d->set_reason("no endpoint matches api.example.com:" + std::to_string(port));
      bus->publish(subjects::sandbox_logs(id), l);
    }
    bus->flush();
  }
  const std::string pending = "/v1/policies/{name}/pending";
  json proposals;
  wait_until([&] {
    proposals = rec.call(gw, "GET", pending, "/v1/policies/contract/pending").body;
    return proposals.is_object() && proposals.value("proposals", json::array()).size() >= 2;
  }, 10s);
  REQUIRE_MESSAGE(proposals["proposals"].size() == 2, proposals.dump(2));
  expect(rec, gw, 200, "GET", pending, "/v1/policies/" + id + "/pending?all=true");
  expect(rec, gw, 404, "GET", pending, "/v1/policies/no-such-sandbox/pending");
  expect(rec, gw, 400, "GET", pending, "/v1/policies/contract/pending?all=maybe");
  const std::string first_proposal = std::to_string(proposals["proposals"][0]["proposal_id"].get<int64_t>());
  const std::string second_proposal = std::to_string(proposals["proposals"][1]["proposal_id"].get<int64_t>());
  const std::string approve = pending + "/{proposal_id}/approve", reject = pending + "/{proposal_id}/reject";
  expect(rec, gw, 200, "POST", approve, "/v1/policies/contract/pending/" + first_proposal + "/approve", json{{"wait_ms", 0}});
  expect(rec, gw, 409, "POST", approve, "/v1/policies/contract/pending/" + first_proposal + "/approve", json::object());
  expect(rec, gw, 400, "POST", approve, "/v1/policies/contract/pending/first/approve", json::object());
  expect(rec, gw, 404, "POST", approve, "/v1/policies/contract/pending/999999/approve", json::object());
  expect(rec, gw, 200, "POST", reject, "/v1/policies/contract/pending/" + second_proposal + "/reject", json::object());
  expect(rec, gw, 409, "POST", reject, "/v1/policies/contract/pending/" + second_proposal + "/reject", json::object());
  expect(rec, gw, 404, "POST", reject, "/v1/policies/no-such-sandbox/pending/" + second_proposal + "/reject", json::object());

  // --- providers ----------------------------------------------------------------------------
  httplib::Headers pkey = {{"Idempotency-Key", "provider-1"}};
  json local = {{"name", "local"}, {"type", "generic"}, {"base_url", "http://127.0.0.1:11434"}, {"credentials", {{"TOKEN", "secret-0123456789"}}}};
  expect(rec, gw, 201, "POST", "/v1/providers", "/v1/providers", local, pkey);
  expect(rec, gw, 201, "POST", "/v1/providers", "/v1/providers", local, pkey);
  expect(rec, gw, 409, "POST", "/v1/providers", "/v1/providers", local);
  expect(rec, gw, 400, "POST", "/v1/providers", "/v1/providers", json{{"name", "x"}, {"type", "azure"}});
  expect(rec, gw, 201, "POST", "/v1/providers", "/v1/providers",
         json{{"name", "gh"}, {"type", "github"}, {"credentials", {{"GITHUB_TOKEN", "ghp_0123456789abcdef"}}}});
  auto plist = expect(rec, gw, 200, "GET", "/v1/providers", "/v1/providers?limit=1");
  CHECK_FALSE(plist.body.value("next_page_token", "").empty());
  expect(rec, gw, 200, "GET", "/v1/providers", "/v1/providers?limit=1&page_token=" + plist.body.value("next_page_token", ""));
  expect(rec, gw, 400, "GET", "/v1/providers", "/v1/providers?limit=many");
  expect(rec, gw, 200, "GET", "/v1/providers/{name}", "/v1/providers/local");
  expect(rec, gw, 404, "GET", "/v1/providers/{name}", "/v1/providers/nope");
  expect(rec, gw, 200, "PATCH", "/v1/providers/{name}", "/v1/providers/local", json{{"credentials", {{"OTHER", "value-0123456789"}}}});
  expect(rec, gw, 404, "PATCH", "/v1/providers/{name}", "/v1/providers/nope", json::object());
  expect(rec, gw, 400, "PATCH", "/v1/providers/{name}", "/v1/providers/local", json{{"base_url", "ftp://x"}});

  // --- inference routes ---------------------------------------------------------------------
  json table = {{"routes", {{{"match", "*"}, {"backends", {{{"provider", "local"}, {"model", "llama3"}}}}}}}};
  expect(rec, gw, 200, "PUT", "/v1/inference", "/v1/inference", table);
  expect(rec, gw, 200, "PUT", "/v1/inference", "/v1/inference?sandbox_id=contract", table);
  expect(rec, gw, 400, "PUT", "/v1/inference", "/v1/inference", json{{"routes", json::array()}});
  expect(rec, gw, 404, "PUT", "/v1/inference", "/v1/inference?sandbox_id=no-such-sandbox", table);
  expect(rec, gw, 200, "GET", "/v1/inference", "/v1/inference");
  expect(rec, gw, 200, "GET", "/v1/inference", "/v1/inference?sandbox_id=" + id);
  expect(rec, gw, 409, "DELETE", "/v1/providers/{name}", "/v1/providers/local");  // a route uses it
  expect(rec, gw, 204, "DELETE", "/v1/inference", "/v1/inference");
  expect(rec, gw, 404, "DELETE", "/v1/inference", "/v1/inference");
  expect(rec, gw, 404, "GET", "/v1/inference", "/v1/inference");
  expect(rec, gw, 204, "DELETE", "/v1/inference", "/v1/inference?sandbox_id=contract");
  expect(rec, gw, 204, "DELETE", "/v1/providers/{name}", "/v1/providers/local");
  expect(rec, gw, 404, "DELETE", "/v1/providers/{name}", "/v1/providers/local");

  // --- stop / start ---------------------------------------------------------------------------
  const std::string stop_path = "/v1/sandboxes/{sandbox_id}/stop", start_path = "/v1/sandboxes/{sandbox_id}/start";
  expect(rec, gw, 409, "POST", start_path, "/v1/sandboxes/" + id + "/start", json::object());  // READY
  expect(rec, gw, 400, "POST", stop_path, "/v1/sandboxes/" + id + "/stop", json{{"grace_s", 301}});
  expect(rec, gw, 400, "POST", stop_path, "/v1/sandboxes/" + id + "/stop", json{{"wait", true}});
  expect(rec, gw, 404, "POST", stop_path, "/v1/sandboxes/no-such-sandbox/stop", json::object());
  expect(rec, gw, 200, "POST", stop_path, "/v1/sandboxes/" + id + "/stop", json{{"grace_s", 2}});
  expect(rec, gw, 409, "POST", stop_path, "/v1/sandboxes/" + id + "/stop", json::object());  // STOPPED
  expect(rec, gw, 400, "POST", start_path, "/v1/sandboxes/" + id + "/start", json{{"grace_s", 1}});
  expect(rec, gw, 404, "POST", start_path, "/v1/sandboxes/no-such-sandbox/start", json::object());
  expect(rec, gw, 202, "POST", start_path, "/v1/sandboxes/" + id + "/start", json::object());
  suite.wait_phase(id, {"READY"});

  // --- deletes ------------------------------------------------------------------------------
  expect(rec, gw, 202, "DELETE", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/" + id);
  expect(rec, gw, 404, "DELETE", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/no-such-sandbox");
  suite.wait_phase(id, {"DELETED"});
  expect(rec, gw, 200, "DELETE", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/" + id);
  // Events of a deleted sandbox: the stream says it watches, then ends (nothing more can happen).
  expect(rec, gw, 200, "GET", "/v1/sandboxes/{sandbox_id}/events", "/v1/sandboxes/" + id + "/events");
  expect(rec, gw, 404, "GET", "/v1/sandboxes/{sandbox_id}/events", "/v1/sandboxes/no-such-sandbox/events");
  expect(rec, gw, 200, "GET", "/v1/events", "/v1/events?sandbox_id=" + id);
  expect(rec, gw, 400, "GET", "/v1/events", "/v1/events?sandbox_id=");
  expect(rec, gw, 400, "GET", "/v1/sandboxes/{sandbox_id}/logs", "/v1/sandboxes/" + id + "/logs?since=yesterday");
  rec.call(gw, "DELETE", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/" + second.body.value("sandbox_id", ""));
  expect(rec, gw, 200, "GET", "/v1/status", "/v1/status");

  // --- tokens and the audit log -------------------------------------------------------------
  auto ro = expect(rec, gw, 201, "POST", "/v1/tokens", "/v1/tokens", json{{"name", "contract-ro"}, {"scope", "read-only"}});
  CHECK(ro.body.value("token", "").starts_with("bwk_"));
  expect(rec, gw, 201, "POST", "/v1/tokens", "/v1/tokens",
         json{{"name", "contract-ci"}, {"scope", "ci"}, {"expires_in_s", 3600}});
  expect(rec, gw, 400, "POST", "/v1/tokens", "/v1/tokens", json{{"name", "x"}, {"scope", "root"}});
  expect(rec, gw, 400, "POST", "/v1/tokens", "/v1/tokens", json{{"name", "x"}, {"scope", "ci"}, {"colour", "red"}});
  httplib::Headers as_ro = {{"Authorization", "Bearer " + ro.body.value("token", "")}};
  httplib::Headers garbage = {{"Authorization", "Bearer not-a-token"}};
  expect(rec, gw, 403, "POST", "/v1/tokens", "/v1/tokens", json{{"name", "y"}, {"scope", "admin"}}, as_ro);
  auto listed = expect(rec, gw, 200, "GET", "/v1/tokens", "/v1/tokens");
  CHECK(listed.raw.find(ro.body.value("token", "")) == std::string::npos);
  expect(rec, gw, 403, "GET", "/v1/tokens", "/v1/tokens", std::nullopt, as_ro);
  auto unauth = expect(rec, gw, 401, "GET", "/v1/tokens", "/v1/tokens", std::nullopt, garbage);
  CHECK(httplib::detail::get_header_value(unauth.headers, "WWW-Authenticate", 0, "") == std::string("Bearer realm=\"bulwark\""));
  expect(rec, gw, 401, "GET", "/v1/sandboxes", "/v1/sandboxes", std::nullopt, garbage);
  expect(rec, gw, 403, "DELETE", "/v1/sandboxes/{sandbox_id}", "/v1/sandboxes/" + id, std::nullopt, as_ro);
  expect(rec, gw, 200, "GET", "/v1/audit", "/v1/audit?limit=5");
  expect(rec, gw, 200, "GET", "/v1/audit", "/v1/audit?since=3&limit=1000");
  expect(rec, gw, 400, "GET", "/v1/audit", "/v1/audit?since=-1");
  expect(rec, gw, 200, "DELETE", "/v1/tokens/{token_id}", "/v1/tokens/" + ro.body.value("token_id", ""));
  expect(rec, gw, 401, "GET", "/v1/sandboxes", "/v1/sandboxes", std::nullopt, as_ro);  // revoked: refused at once
  expect(rec, gw, 404, "DELETE", "/v1/tokens/{token_id}", "/v1/tokens/ffffffffffff");

  // Not a route: the server's own 404 is JSON too (not an operation, so checked here).
  auto none = httplib::Client(gw).Get("/v1/nothing-here");
  REQUIRE(none);
  CHECK(none->status == 404);
  CHECK(json::parse(none->body)["error"]["code"] == "not_found");

  // --- a second gateway: the 429 of a tight rate limit, and /healthz once NATS is gone ---------
  {
    NatsServer nats;
    TempDir tmp("bulwark-openapi");
    int port = free_port();
    std::string gw2 = "http://127.0.0.1:" + std::to_string(port);
    auto proc = Process::spawn({.argv = {bin("bulwark-gateway-api"), "--nats-url", nats.url(), "--http-port", std::to_string(port),
                                         "--db", tmp.file("g.db"), "--rate-limit", "1", "--rate-burst", "1"},
                                .output_file = tmp.file("gateway.log")});
    REQUIRE_MESSAGE(wait_until([&] { return port_open(port); }, 10s), read_file(tmp.file("gateway.log")));
    rec.token = read_admin_token(tmp.file("admin.token"));
    expect(rec, gw2, 200, "GET", "/v1/providers", "/v1/providers");
    auto limited = expect(rec, gw2, 429, "GET", "/v1/providers", "/v1/providers");
    CHECK(httplib::detail::get_header_value(limited.headers, "Retry-After", 0, "") == std::string("1"));
    expect(rec, gw2, 200, "GET", "/healthz", "/healthz");  // never limited
    nats.stop();
    bool degraded = wait_until([&] {
      auto r = httplib::Client(gw2).Get("/healthz");
      return r && r->status == 503;
    }, 10s);
    CHECK_MESSAGE(degraded, read_file(tmp.file("gateway.log")));
    expect(rec, gw2, 503, "GET", "/healthz", "/healthz");
    proc.stop();
  }
  MESSAGE("exercised " << observations.size() << " calls in "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
                       << " ms");

  // --- the validator ------------------------------------------------------------------------
  json routes = json::array();
  for (const auto& r : gateway::route_specs()) routes.push_back({{"method", r.method}, {"path", r.path}});
  TempDir out("bulwark-openapi-out");
  std::ofstream(out.file("observed.json")) << json{{"routes", routes}, {"observations", observations}}.dump(1);
  auto v = run_process({"node", dir + "/validate.mjs", source_dir() + "/docs/openapi.yaml", out.file("observed.json")});
  CHECK_MESSAGE(v.code == 0, "docs/openapi.yaml and the gateway disagree:\n", v.out, v.err);
  MESSAGE((v.out + v.err));
}
