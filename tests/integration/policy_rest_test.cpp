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
