#include "cli/sandbox_ops.h"

#include <doctest/doctest.h>

#include "cli/client.h"

using namespace bulwark::cli;
using nlohmann::json;

TEST_CASE("sandbox list flags become one query; labels are checked and encoded") {
  SandboxListFlags f;
  CHECK(sandbox_list_path(f, "", 1000) == "/v1/sandboxes?limit=1000");
  f.all = true;
  f.labels = {"team=ml", "env=a b"};
  f.phases = {"ready", "EXITED"};
  CHECK(sandbox_list_path(f, "tok", 5) ==
        "/v1/sandboxes?all=true&label=team%3Dml&label=env%3Da%20b&phase=READY&phase=EXITED&limit=5&page_token=tok");
  f.labels = {"team"};
  try {
    sandbox_list_path(f, "", 1);
    FAIL("accepted --label team");
  } catch (const CliError& e) {
    CHECK(e.exit_code == kUsage);
    CHECK(e.message.find("--label") != std::string::npos);
  }
}

namespace {
// A gateway with 7 sandboxes; pages of at most `limit`, tokens "t<offset>".
struct FakeGateway {
  std::vector<std::string> calls;
  json operator()(const std::string& path) {
    calls.push_back(path);
    size_t limit = std::stoul(path.substr(path.find("limit=") + 6));
    size_t start = 0;
    if (auto t = path.find("page_token=t"); t != std::string::npos) start = std::stoul(path.substr(t + 12));
    json page = {{"sandboxes", json::array()}, {"next_page_token", ""}};
    for (size_t i = start; i < std::min<size_t>(7, start + limit); ++i) page["sandboxes"].push_back({{"name", "s" + std::to_string(i)}});
    if (start + limit < 7) page["next_page_token"] = "t" + std::to_string(start + limit);
    return page;
  }
};
}  // namespace

TEST_CASE("list follows pages to the end, stops at --limit, or fetches one --page-token page") {
  FakeGateway gw;
  auto fetch = [&](const std::string& p) { return gw(p); };
  SandboxListFlags f;
  auto all = list_sandboxes(f, fetch);
  CHECK(all["sandboxes"].size() == 7);
  CHECK(all["next_page_token"] == "");
  CHECK(gw.calls.size() == 1);  // pages of 1000

  gw.calls.clear();
  f.limit = 5;
  auto five = list_sandboxes(f, fetch);
  CHECK(five["sandboxes"].size() == 5);
  CHECK(five["next_page_token"] == "t5");  // where to go on
  CHECK(gw.calls == std::vector<std::string>{"/v1/sandboxes?limit=5"});

  gw.calls.clear();
  f.limit = 3;
  f.page_token = "t3";
  auto page = list_sandboxes(f, fetch);
  CHECK(page["sandboxes"][0]["name"] == "s3");
  CHECK(page["sandboxes"].size() == 3);
  CHECK(page["next_page_token"] == "t6");
  CHECK(gw.calls.size() == 1);
}

TEST_CASE("list asks for small pages when the gateway pages itself") {
  // A gateway that serves pages of at most 2: the CLI still follows them all.
  std::vector<std::string> calls;
  auto fetch = [&](const std::string& p) {
    calls.push_back(p);
    size_t n = std::min<size_t>(2, std::stoul(p.substr(p.find("limit=") + 6)));
    size_t start = p.find("page_token=") == std::string::npos ? 0 : std::stoul(p.substr(p.find("page_token=") + 11));
    json page = {{"sandboxes", json::array()}, {"next_page_token", ""}};
    for (size_t i = start; i < std::min<size_t>(5, start + n); ++i) page["sandboxes"].push_back({{"i", i}});
    if (start + n < 5) page["next_page_token"] = std::to_string(start + n);
    return page;
  };
  SandboxListFlags f;
  CHECK(list_sandboxes(f, fetch)["sandboxes"].size() == 5);
  CHECK(calls.size() == 3);
  calls.clear();
  f.limit = 3;
  auto three = list_sandboxes(f, fetch);
  CHECK(three["sandboxes"].size() == 3);
  CHECK(calls == std::vector<std::string>{"/v1/sandboxes?limit=3", "/v1/sandboxes?limit=1&page_token=2"});
  CHECK(three["next_page_token"] == "3");
}
