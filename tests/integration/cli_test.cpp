// The bulwark CLI as a user runs it, against the real suite.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/integration/policies.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;

namespace {
// extra_env: "K=V" entries added to this process's environment for the CLI.
ProcessResult bulwark_cli(const std::vector<std::string>& args, const std::string& gateway,
                          const std::vector<std::string>& extra_env = {}) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", gateway};
  argv.insert(argv.end(), args.begin(), args.end());
  std::optional<std::vector<std::string>> env;
  if (!extra_env.empty()) {
    env.emplace();
    for (char** e = environ; *e; ++e) env->push_back(*e);
    env->insert(env->end(), extra_env.begin(), extra_env.end());
  }
  return run_process(argv, env);
}

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  std::string path = dir.file(name);
  std::ofstream(path) << text;
  return path;
}




}  // namespace

TEST_CASE("bulwark sandbox create -- echo hi prints the sandbox and its output") {
  Suite suite;
  auto r = bulwark_cli({"sandbox", "create", "--name", "cli-demo", "--", "echo", "hi"}, suite.gateway_url());
  CHECK(r.code == 0);
  CHECK_MESSAGE(r.out.find("cli-demo") != std::string::npos, r.out);
  CHECK_MESSAGE(r.out.find("EXITED") != std::string::npos, r.out);
  CHECK_MESSAGE(r.out.find("\nhi\n") != std::string::npos, r.out);

  auto list = bulwark_cli({"sandbox", "list", "-o", "json"}, suite.gateway_url());
  CHECK(list.code == 0);
  CHECK(nlohmann::json::parse(list.out)["sandboxes"][0]["name"] == "cli-demo");

  // In the foreground the command's exit code is create's (podman run's convention).
  auto failing = bulwark_cli({"sandbox", "create", "--name", "cli-fails", "--", "sh", "-c", "echo bye; exit 42"},
                             suite.gateway_url());
  CHECK_MESSAGE(failing.code == 42, failing.out);
  CHECK_MESSAGE(failing.out.find("\nbye\n") != std::string::npos, failing.out);

  // -d returns once the command runs, without waiting for it to end.
  auto detached = bulwark_cli({"sandbox", "create", "-d", "--name", "cli-bg", "--", "sleep", "600"}, suite.gateway_url());
  CHECK(detached.code == 0);
  CHECK_MESSAGE(detached.out.find("READY") != std::string::npos, detached.out);

  auto del = bulwark_cli({"sandbox", "delete", "cli-demo", "--wait"}, suite.gateway_url());
  CHECK(del.code == 0);
  CHECK(del.out.find("DELETED") != std::string::npos);
}

TEST_CASE("the CLI's exit codes say what went wrong") {
  Suite suite;
  CHECK(bulwark_cli({"sandbox", "get", "missing"}, suite.gateway_url()).code == 3);
  CHECK(bulwark_cli({"sandbox", "create", "--name", "Bad Name", "--", "true"}, suite.gateway_url()).code == 1);
  CHECK(bulwark_cli({"sandbox", "create", "--env", "NOEQUALS", "--", "true"}, suite.gateway_url()).code == 2);
  CHECK(bulwark_cli({"sandbox", "frobnicate"}, suite.gateway_url()).code == 2);
  CHECK(bulwark_cli({"sandbox", "create", "--driver", "lxc", "--", "true"}, suite.gateway_url()).code == 2);
  CHECK(bulwark_cli({"sandbox", "list"}, "http://127.0.0.1:" + std::to_string(free_port())).code == 4);
  CHECK(bulwark_cli({"sandbox", "create", "--image", "localhost/no-such-image:1", "--", "true"}, suite.gateway_url()).code == 5);
}

TEST_CASE("bulwark policy validate: OpenShell's reference policies are valid, offline") {
  // No gateway listens there: validate must not need one.
  std::string nowhere = "http://127.0.0.1:" + std::to_string(free_port());
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(BULWARK_SOURCE_DIR "/tests/fixtures/openshell-policies")) {
    if (!entry.is_regular_file()) continue;
    std::string file = entry.path().string();
    auto r = bulwark_cli({"policy", "validate", file}, nowhere);
    CHECK_MESSAGE(r.code == 0, file, "\n", r.err);
    CHECK_MESSAGE(r.out == file + ": valid\n", r.out);
    CHECK_MESSAGE(r.err.empty(), r.err);
    ++seen;
  }
  CHECK(seen >= 4);
}

TEST_CASE("bulwark policy validate lists every problem of a bad policy at its FILE:LINE:COL") {
  TempDir dir;
  std::string nowhere = "http://127.0.0.1:" + std::to_string(free_port());
  std::string bad = write_file(dir, "bad.yaml", kBadPolicy);
  auto r = bulwark_cli({"policy", "validate", bad}, nowhere);
  CHECK(r.code == 1);
  CHECK_MESSAGE(r.out.empty(), r.out);
  for (const auto& [needle, path] : std::vector<std::pair<std::string, std::string>>{
           {"relative/path", "filesystem_policy.read_write[1]"}, {"root", "process.run_as_user"}, {"colour", "colour"}}) {
    std::string expected = bad + ":" + position_of(kBadPolicy, needle) + ": " + path + ": ";
    CHECK_MESSAGE(has(r.err, expected), "expected '", expected, "' in:\n", r.err);
  }
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 3);  // one line a problem, nothing else

  auto missing = bulwark_cli({"policy", "validate", dir.file("missing.yaml")}, nowhere);
  CHECK(missing.code == 2);
  CHECK_MESSAGE(has(missing.err, dir.file("missing.yaml")), missing.err);
  CHECK(bulwark_cli({"policy", "validate"}, nowhere).code == 2);
}

TEST_CASE("bulwark sandbox create --policy: the gateway refuses a bad one at its line:column, a good one runs") {
  Suite suite;
  TempDir dir;
  std::string bad = write_file(dir, "bad.yaml", kBadPolicy);
  auto refused = bulwark_cli({"sandbox", "create", "--name", "bad-policy", "--policy", bad, "--", "echo", "hi"}, suite.gateway_url());
  CHECK(refused.code == 1);
  CHECK_MESSAGE(has(refused.err, "policy:" + position_of(kBadPolicy, "relative/path") + ": filesystem_policy.read_write[1]"),
                refused.err);
  CHECK_MESSAGE(has(refused.err, "policy:" + position_of(kBadPolicy, "root") + ": process.run_as_user"), refused.err);
  CHECK_MESSAGE(has(refused.err, "[field: policy]"), refused.err);
  CHECK(bulwark_cli({"sandbox", "get", "bad-policy"}, suite.gateway_url()).code == 3);  // nothing was created

  auto unreadable = bulwark_cli({"sandbox", "create", "--policy", dir.file("missing.yaml"), "--", "true"}, suite.gateway_url());
  CHECK(unreadable.code == 2);
  CHECK_MESSAGE(has(unreadable.err, dir.file("missing.yaml")), unreadable.err);

  std::string good = write_file(dir, "good.yaml", kGoodPolicy);
  CHECK(bulwark_cli({"policy", "validate", good}, suite.gateway_url()).code == 0);
  auto r = bulwark_cli({"sandbox", "create", "--name", "good-policy", "--policy", good, "--", "echo", "hi"}, suite.gateway_url());
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK_MESSAGE(has(r.out, "EXITED"), r.out, r.err);
  CHECK_MESSAGE(has(r.out, "\nhi\n"), r.out, r.err);
}

TEST_CASE("bulwark policy set/update/get/list change a running sandbox's policy; logs --denials shows refusals") {
  Suite suite;
  TempDir dir;
  std::string good = write_file(dir, "good.yaml", kGoodPolicy);
  // The agent tries an address the policy does not allow, then idles.
  auto r = bulwark_cli({"sandbox", "create", "--name", "live", "--policy", good, "-d", "--", "sh", "-c",
                        "wget -O /dev/null http://blocked.example/ ; sleep 600"},
                       suite.gateway_url());
  REQUIRE_MESSAGE(r.code == 0, r.err);

  std::string v2 = write_file(dir, "v2.yaml", kGoodPolicy + "network_policies:\n  web:\n    endpoints:\n"
                                                            "      - { host: example.com, port: 443 }\n"
                                                            "    binaries:\n      - { path: /bin/busybox }\n");
  auto set = bulwark_cli({"policy", "set", "live", "--policy", v2, "--wait", "--timeout", "20"}, suite.gateway_url());
  CHECK_MESSAGE(set.code == 0, set.err);
  CHECK_MESSAGE(has(set.out, "policy version 2 stored, enforced"), set.out);

  auto dry = bulwark_cli({"policy", "update", "live", "--add-endpoint", "api.example.com:443:read-only", "--binary",
                          "/bin/busybox", "--dry-run"},
                         suite.gateway_url());
  CHECK_MESSAGE(dry.code == 0, dry.err);
  CHECK_MESSAGE(has(dry.out, "api.example.com"), dry.out);
  auto upd = bulwark_cli({"policy", "update", "live", "--add-endpoint", "api.example.com:443:read-only", "--binary",
                          "/bin/busybox", "--wait"},
                         suite.gateway_url());
  CHECK_MESSAGE(upd.code == 0, upd.err);
  CHECK_MESSAGE(has(upd.out, "policy version 3 stored, enforced"), upd.out);
  auto bad = bulwark_cli({"policy", "update", "live", "--add-allow", "api.example.com:443:GET"}, suite.gateway_url());
  CHECK(bad.code == 2);
  CHECK_MESSAGE(has(bad.err, "--add-allow"), bad.err);

  auto list = bulwark_cli({"policy", "list", "live"}, suite.gateway_url());
  CHECK(list.code == 0);
  CHECK_MESSAGE(has(list.out, "VERSION"), list.out);
  CHECK_MESSAGE(has(list.out, "\n3 "), list.out);
  auto get = bulwark_cli({"policy", "get", "live", "--rev", "1"}, suite.gateway_url());
  CHECK(get.code == 0);
  CHECK(get.out == kGoodPolicy);

  // The agent's wget was refused by the proxy: a structured denial, shown by --denials.
  bool seen = wait_until([&] {
    auto d = bulwark_cli({"sandbox", "logs", "live", "--denials"}, suite.gateway_url());
    return d.code == 0 && has(d.out, "blocked.example:80") && has(d.out, "proxy");
  }, std::chrono::seconds(20));
  CHECK_MESSAGE(seen, bulwark_cli({"sandbox", "logs", "live"}, suite.gateway_url()).out);
  bulwark_cli({"sandbox", "delete", "live"}, suite.gateway_url());
}

TEST_CASE("bulwark provider and inference: --from-env names the variable; no output ever holds the value") {
  Suite suite;
  const std::string secret = "sk-ant-cli-SECRET-0123456789";
  auto created = bulwark_cli({"provider", "create", "--name", "claude", "--type", "anthropic", "--from-env"}, suite.gateway_url(),
                             {"ANTHROPIC_API_KEY=" + secret});
  CHECK_MESSAGE(created.code == 0, created.err);
  CHECK_MESSAGE(has(created.err, "took ANTHROPIC_API_KEY from the environment"), created.err);
  CHECK_MESSAGE(has(created.out, "ANTHROPIC_API_KEY=sk-****6789"), created.out);
  auto nothing = bulwark_cli({"provider", "create", "--name", "gh", "--type", "github", "--from-env"}, suite.gateway_url(),
                             {"GITHUB_TOKEN=", "GH_TOKEN="});
  CHECK(nothing.code == 2);
  CHECK_MESSAGE(has(nothing.err, "GITHUB_TOKEN, GH_TOKEN"), nothing.err);

  auto list = bulwark_cli({"provider", "list", "-o", "json"}, suite.gateway_url());
  CHECK(list.code == 0);
  CHECK(nlohmann::json::parse(list.out)["providers"][0]["credentials"]["ANTHROPIC_API_KEY"] == "sk-****6789");
  auto set = bulwark_cli({"inference", "set", "--provider", "claude", "--model", "claude-sonnet-4-5"}, suite.gateway_url());
  CHECK_MESSAGE(set.code == 0, set.err);
  CHECK_MESSAGE(has(set.out, "claude-sonnet-4-5"), set.out);
  auto get = bulwark_cli({"inference", "get", "-o", "json"}, suite.gateway_url());
  CHECK(get.code == 0);
  CHECK(nlohmann::json::parse(get.out)["routes"][0]["backends"][0]["provider"] == "claude");
  auto in_use = bulwark_cli({"provider", "delete", "claude"}, suite.gateway_url());
  CHECK(in_use.code == 1);
  CHECK_MESSAGE(has(in_use.err, "route '*'"), in_use.err);
  for (const auto& r : {created, list, set, get, in_use, bulwark_cli({"provider", "get", "claude", "-o", "json"}, suite.gateway_url())})
    CHECK_FALSE(has(r.out + r.err, secret));

  CHECK(bulwark_cli({"inference", "delete"}, suite.gateway_url()).code == 0);
  CHECK(bulwark_cli({"inference", "get"}, suite.gateway_url()).code == 3);
  CHECK(bulwark_cli({"provider", "delete", "claude"}, suite.gateway_url()).code == 0);
  CHECK(bulwark_cli({"provider", "get", "claude"}, suite.gateway_url()).code == 3);
}

TEST_CASE("bulwark status shows the gateway, live services, the driver and sandboxes by phase; list filters and pages") {
  Suite suite;
  const std::string gw = suite.gateway_url();
  auto a = bulwark_cli({"sandbox", "create", "--name", "st-ml", "-l", "team=ml", "-d", "--", "sleep", "600"}, gw);
  REQUIRE_MESSAGE(a.code == 0, a.err);
  auto b = bulwark_cli({"sandbox", "create", "--name", "st-web", "-l", "team=web", "--", "true"}, gw);
  REQUIRE_MESSAGE(b.code == 0, b.err);

  ProcessResult st;
  bool ok = wait_until([&] {
    st = bulwark_cli({"status"}, gw);
    return st.code == 0 && has(st.out, suite.driver_id());
  }, std::chrono::seconds(10));
  CHECK_MESSAGE(ok, st.out, st.err);
  CHECK_MESSAGE(has(st.out, "NATS connected"), st.out);
  // The LIVE column of a service's row.
  auto live = [&](const std::string& service) {
    size_t at = st.out.find("\n" + service + " ");
    if (at == std::string::npos) return std::string("(no row)");
    std::string row = st.out.substr(at + 1, st.out.find('\n', at + 1) - at - 1);
    size_t col = row.find_first_not_of(' ', service.size());
    return row.substr(col, row.find(' ', col) - col);
  };
  for (const char* s : {"gateway-api", "scheduler", "policy-service", "driver-podman"}) CHECK_MESSAGE(live(s) == "yes", s, "\n", st.out);
  CHECK_MESSAGE(live("driver-vm") == "no", st.out);
  CHECK_MESSAGE(has(st.out, "sandboxes: READY 1, EXITED 1"), st.out);

  auto js = bulwark_cli({"status", "-o", "json"}, gw);
  REQUIRE(js.code == 0);
  auto j = nlohmann::json::parse(js.out);
  CHECK(j["nats_connected"] == true);
  CHECK(j["drivers"][0]["driver_id"] == suite.driver_id());
  CHECK(j["drivers"][0]["capacity"].get<int>() > 0);
  CHECK(j["sandboxes_by_phase"]["READY"] == 1);
  auto ym = bulwark_cli({"status", "-o", "yaml", "--timeout-ms", "200"}, gw);
  CHECK(ym.code == 0);
  CHECK_MESSAGE(has(ym.out, "nats_connected: true"), ym.out);
  CHECK(bulwark_cli({"status", "--timeout-ms", "0"}, gw).code == 2);
  CHECK(bulwark_cli({"status"}, "http://127.0.0.1:" + std::to_string(free_port())).code == 4);

  auto ml = bulwark_cli({"sandbox", "list", "--label", "team=ml", "-o", "json"}, gw);
  REQUIRE(ml.code == 0);
  auto mj = nlohmann::json::parse(ml.out);
  REQUIRE(mj["sandboxes"].size() == 1);
  CHECK(mj["sandboxes"][0]["name"] == "st-ml");
  auto exited = bulwark_cli({"sandbox", "list", "--phase", "exited"}, gw);
  CHECK(exited.code == 0);
  CHECK_MESSAGE((has(exited.out, "st-web") && !has(exited.out, "st-ml")), exited.out);
  auto one = bulwark_cli({"sandbox", "list", "--limit", "1"}, gw);
  CHECK(one.code == 0);
  CHECK_MESSAGE((has(one.out, "st-ml") && !has(one.out, "st-web")), one.out);
  CHECK_MESSAGE(has(one.err, "--page-token "), one.err);
  auto token = one.err.substr(one.err.find("--page-token ") + 13);
  token = token.substr(0, token.find(' '));
  auto next = bulwark_cli({"sandbox", "list", "--page-token", token}, gw);
  CHECK_MESSAGE(next.code == 0, next.err);
  CHECK_MESSAGE((has(next.out, "st-web") && !has(next.out, "st-ml")), next.out);
  CHECK(bulwark_cli({"sandbox", "list", "--label", "team"}, gw).code == 2);
  CHECK(bulwark_cli({"sandbox", "list", "--phase", "running"}, gw).code == 2);
  auto bad_token = bulwark_cli({"sandbox", "list", "--page-token", "nonsense!"}, gw);
  CHECK(bad_token.code == 1);
  CHECK_MESSAGE(has(bad_token.err, "[field: page_token]"), bad_token.err);
  bulwark_cli({"sandbox", "delete", "st-ml"}, gw);
}
