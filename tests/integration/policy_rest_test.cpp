// A sandbox policy is checked where it enters: the gateway's REST API refuses a bad one naming
// each problem's line:column, and the standalone supervisor refuses a bad policy file before it
// runs anything.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>

#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
// Three problems: a relative path, root as the agent's user, and a key OpenShell does not have.
const std::string kBadPolicy =
    "version: 1\n"
    "filesystem_policy:\n"
    "  read_only: [/bin, /etc]\n"
    "  read_write: [/tmp, relative/path]\n"
    "process:\n"
    "  run_as_user: root\n"
    "colour: blue\n";

const std::string kGoodPolicy =
    "version: 1\n"
    "filesystem_policy:\n"
    "  read_only: [/bin, /etc, /proc, /dev/urandom]\n"
    "  read_write: [/tmp, /dev/null, /sandbox]\n";

// "LINE:COL" (1-based) of the first occurrence of needle in text.
std::string position_of(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  REQUIRE_MESSAGE(at != std::string::npos, needle);
  size_t line_start = text.rfind('\n', at);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
  return std::to_string(line) + ":" + std::to_string(at - line_start + 1);
}

bool has(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }
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
