// A sandbox policy is checked where it enters: the gateway's REST API refuses a bad one naming
// each problem's line:column, and the standalone supervisor refuses a bad policy file before it
// runs anything.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>

#include "tests/integration/policies.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {



}  // namespace

TEST_CASE("POST /v1/sandboxes: an invalid policy is a 400 on field policy at its line:column; a valid one is 202") {
  Suite suite;
  auto c = suite.client();
  auto r = c.Post("/v1/sandboxes", json{{"name", "bad-policy"}, {"command", {"true"}}, {"policy", kBadPolicy}}.dump(),
                  "application/json");
  REQUIRE(r);
  CHECK(r->status == 400);
  auto body = json::parse(r->body, nullptr, false);
  REQUIRE_MESSAGE(!body.is_discarded(), r->body);
  CHECK(body["error"].value("field", "") == "policy");
  std::string message = body["error"].value("message", "");
  CHECK_MESSAGE(has(message, "policy:" + position_of(kBadPolicy, "relative/path") + ": filesystem_policy.read_write[1]: "), message);
  CHECK_MESSAGE(has(message, "policy:" + position_of(kBadPolicy, "root") + ": process.run_as_user: "), message);
  CHECK_MESSAGE(has(message, "policy:" + position_of(kBadPolicy, "colour") + ": colour: "), message);
  // Refused means nothing was created.
  CHECK(json::parse(c.Get("/v1/sandboxes?all=true")->body).value("sandboxes", json::array()).empty());

  auto ok = c.Post("/v1/sandboxes", json{{"name", "good-policy"}, {"command", {"true"}}, {"policy", kGoodPolicy}}.dump(),
                   "application/json");
  REQUIRE(ok);
  CHECK_MESSAGE(ok->status == 202, ok->body);
  auto s = suite.wait_phase(json::parse(ok->body)["sandbox_id"], {"EXITED", "FAILED"}, 60s);
  CHECK_MESSAGE(s["phase"] == "EXITED", s.dump(2));
}

TEST_CASE("bulwark-supervisor --standalone --policy BADFILE exits 2 naming each problem's FILE:LINE:COL") {
  TempDir dir;
  std::string bad = dir.file("bad.yaml");
  std::ofstream(bad) << kBadPolicy;
  std::string out = dir.file("out.txt");
  auto p = Process::spawn({.argv = {bin("bulwark-supervisor"), "--standalone", "--policy", bad, "--", "true"}, .output_file = out});
  auto code = p.wait_for(30s);
  REQUIRE(code);
  CHECK(*code == 2);
  std::string text = read_file(out);
  CHECK_MESSAGE(has(text, bad + ":" + position_of(kBadPolicy, "relative/path") + ": filesystem_policy.read_write[1]: "), text);
  CHECK_MESSAGE(has(text, bad + ":" + position_of(kBadPolicy, "root") + ": process.run_as_user: "), text);
  CHECK_MESSAGE(has(text, bad + ":" + position_of(kBadPolicy, "colour") + ": colour: "), text);

  std::string missing = dir.file("missing.yaml");
  auto q = Process::spawn({.argv = {bin("bulwark-supervisor"), "--standalone", "--policy", missing, "--", "true"}, .output_file = out});
  auto missing_code = q.wait_for(30s);
  REQUIRE(missing_code);
  CHECK(*missing_code == 2);
  CHECK_MESSAGE(has(read_file(out), missing), read_file(out));
}

TEST_CASE("REST policy operations on a live podman sandbox: version 1, --wait acknowledged, static sections locked") {
  Suite suite;
  auto c = suite.client();
  auto s = suite.create({{"name", "live-policy"}, {"policy", kGoodPolicy}});  // sleep infinity
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED"}, 60s);
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  auto call = [&](const std::string& method, const std::string& path, const json& body = nullptr) {
    auto r = method == "GET"   ? c.Get(path)
             : method == "PUT" ? c.Put(path, body.dump(), "application/json")
             : method == "PATCH" ? c.Patch(path, body.dump(), "application/json")
                                 : c.Post(path, body.dump(), "application/json");
    REQUIRE(r);
    auto j = json::parse(r->body, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), r->body);
    return std::make_pair(r->status, j);
  };

  // The gateway stored the creation policy as version 1.
  auto [st1, v1] = call("GET", "/v1/sandboxes/live-policy/policy");
  CHECK(st1 == 200);
  CHECK(v1.value("version", "") == "1");
  CHECK(v1.value("yaml", "") == kGoodPolicy);

  // A network change, waited for: the supervisor in the container applies and acknowledges it.
  std::string v2_yaml = kGoodPolicy + "network_policies:\n  web:\n    endpoints:\n      - { host: example.com, port: 443 }\n"
                                      "    binaries:\n      - { path: /bin/busybox }\n";
  auto [st2, w2] = call("PUT", "/v1/sandboxes/" + id + "/policy", {{"yaml", v2_yaml}, {"wait_ms", 20000}, {"reason", "test"}});
  CHECK_MESSAGE(st2 == 200, w2.dump());
  CHECK(w2.value("version", "") == "2");
  CHECK_MESSAGE(w2.value("acknowledged", false), w2.dump());

  // Static sections may not change on a live sandbox: refused naming the section; nothing stored.
  std::string bad = "version: 1\nfilesystem_policy:\n  read_only: [/bin]\n  read_write: [/tmp]\n";
  auto [st3, e3] = call("PUT", "/v1/sandboxes/" + id + "/policy", {{"yaml", bad}});
  CHECK(st3 >= 400);
  CHECK(st3 < 500);
  CHECK_MESSAGE(e3["error"].value("field", "") == "filesystem_policy", e3.dump());

  // A dry-run update shows the result and stores nothing.
  json op = {{"add_endpoint", {{"network_policy", "web"}, {"endpoint_yaml", "{host: api.example.com, port: 443}"}}}};
  auto [st4, d4] = call("PATCH", "/v1/sandboxes/" + id + "/policy", {{"operations", {op}}, {"dry_run", true}});
  CHECK_MESSAGE(st4 == 200, d4.dump());
  CHECK(has(d4.value("yaml", ""), "api.example.com"));
  auto [st5, list] = call("GET", "/v1/sandboxes/" + id + "/policy/versions");
  CHECK(st5 == 200);
  CHECK(list["versions"].size() == 2);
  auto [st6, old] = call("GET", "/v1/sandboxes/" + id + "/policy?version=1");
  CHECK(old.value("yaml", "") == kGoodPolicy);

  // Validation without storing: problems with line and column.
  auto [st7, val] = call("POST", "/v1/policies/validate", {{"yaml", kBadPolicy}});
  CHECK(st7 == 200);
  CHECK(val.value("valid", true) == false);
  CHECK(val["problems"].size() >= 3);
  CHECK(val["problems"][0].value("line", 0) > 0);
  // Bad REST input names its field.
  auto [st8, e8] = call("PUT", "/v1/sandboxes/" + id + "/policy", {{"yaml", v2_yaml}, {"wait_ms", 999999999}});
  CHECK(st8 == 400);
  CHECK(e8["error"].value("field", "") == "wait_ms");
  c.Delete("/v1/sandboxes/" + id);
}
