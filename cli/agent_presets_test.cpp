#include "cli/agent_presets.h"

#include <doctest/doctest.h>

#include <set>

#include "cli/client.h"
#include "shared/error.h"
#include "shared/policy.h"
#include "shared/policy_engine.h"

using namespace bulwark;
using namespace bulwark::cli;
using nlohmann::json;

namespace {

const char* kMinimal = R"(name: demo
description: a demo agent
image: localhost/bulwark/agent:latest
command: [demo]
env: { DEMO_BASE_URL: "https://inference.local" }
providers:
  - { type: anthropic, required: true, base_url_env: ANTHROPIC_BASE_URL }
  - { type: github }
denied_hosts: [telemetry.example.com]
policy:
  version: 1
  network_policies:
    github:
      endpoints: [{ host: api.github.com, port: 443, protocol: rest, access: read-only }]
      binaries: [{ path: /usr/bin/git }]
)";

std::string with(const std::string& from, const std::string& to) {
  std::string s = kMinimal;
  auto at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

// The executables each preset's agent runs as, from the agent image's layout.
const std::vector<std::string> kAgentChains[] = {
    {"/usr/local/bin/node"},
    {"/usr/local/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"},
    {"/usr/local/lib/node_modules/@openai/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/codex/codex",
     "/usr/local/bin/node"},
    {"/usr/bin/curl"},
    {"/usr/bin/git"},
    {"/usr/bin/python3.11"},
};

}  // namespace

TEST_CASE("every preset in deploy/presets loads, and its policy passes the real parser and engine") {
  auto presets = load_presets({BULWARK_PRESETS_SOURCE});
  std::set<std::string> names;
  for (const auto& p : presets) names.insert(p.name);
  CHECK(names == std::set<std::string>{"claude-code", "codex", "copilot", "gemini", "openclaw", "opencode"});
  for (const auto& p : presets) {
    INFO("preset " << p.name << " (" << p.file << ")");
    CHECK(p.image == "localhost/bulwark/agent:latest");
    CHECK_FALSE(p.command.empty());
    CHECK_FALSE(p.version_command.empty());
    CHECK_FALSE(p.description.empty());
    // The policy text the CLI sends is what the gateway and the supervisor parse.
    auto pol = policy::parse_policy(p.policy_yaml, p.file);
    auto engine = policy::CompiledPolicy::compile(pol);
    // Default deny: each telemetry or direct-API host is refused to every executable the agent
    // could run as, and not even resolved by the sandbox's DNS.
    REQUIRE_FALSE(p.denied_hosts.empty());
    for (const auto& host : p.denied_hosts) {
      CHECK_MESSAGE(!engine->names_host(host), host << " is named by a rule");
      for (const auto& chain : kAgentChains)
        CHECK_MESSAGE(!engine->decide_connect(host, 443, chain).allow, host << " is allowed to " << chain[0]);
    }
    // Package registries are read-only: a GET is allowed, a publish (PUT) is not.
    auto npm = engine->decide_connect("registry.npmjs.org", 443, std::vector<std::string>{"/usr/local/bin/node"});
    REQUIRE_MESSAGE(npm.allow, npm.reason);
    CHECK(policy::decide_request(npm, "GET", "/left-pad").allow);
    CHECK_FALSE(policy::decide_request(npm, "PUT", "/left-pad").allow);
    // GitHub: clone and fetch, never push.
    auto gh = engine->decide_connect("github.com", 443, std::vector<std::string>{"/usr/lib/git-core/git-remote-http", "/usr/bin/git"});
    REQUIRE_MESSAGE(gh.allow, gh.reason);
    CHECK(policy::decide_request(gh, "GET", "/o/r.git/info/refs?service=git-upload-pack").allow);
    CHECK(policy::decide_request(gh, "POST", "/o/r.git/git-upload-pack").allow);
    CHECK_FALSE(policy::decide_request(gh, "POST", "/o/r.git/git-receive-pack").allow);
    // No secret in a preset: keys come from providers, placeholders only.
    for (const auto& [k, v] : p.env) {
      CHECK_MESSAGE(v.find("sk-") != 0, k);
      CHECK_MESSAGE(v.find("ghp_") != 0, k);
    }
  }
}

TEST_CASE("model-calling presets point their CLI at inference.local") {
  auto presets = load_presets({BULWARK_PRESETS_SOURCE});
  std::map<std::string, AgentPreset> by;
  for (auto& p : presets) by[p.name] = p;
  CHECK(by["claude-code"].env["ANTHROPIC_BASE_URL"] == "https://inference.local");
  CHECK(by["claude-code"].env.count("ANTHROPIC_API_KEY") == 1);  // a placeholder: no login prompt
  CHECK(by["claude-code"].env["DISABLE_AUTOUPDATER"] == "1");
  CHECK(by["codex"].env["OPENAI_BASE_URL"] == "https://inference.local/v1");
  CHECK(by["claude-code"].providers.at(0).type == "anthropic");
  CHECK(by["codex"].providers.at(0).type == "openai");
  CHECK(by["copilot"].providers.at(0).type == "github");
}

TEST_CASE("a preset with an unknown key, a bad provider type or an invalid policy is refused") {
  CHECK(parse_agent_preset(kMinimal, "demo.yaml").name == "demo");
  auto refused = [](const std::string& text, const std::string& part) {
    try {
      parse_agent_preset(text, "demo.yaml");
      FAIL("accepted: " << text);
    } catch (const policy::PolicyInvalid& e) {
      std::string all;
      for (const auto& p : e.problems) all += p.to_string() + "\n";
      CHECK_MESSAGE(all.find(part) != std::string::npos, all);
    } catch (const Error& e) {
      CHECK_MESSAGE(std::string(e.what()).find(part) != std::string::npos, e.what());
    }
  };
  refused(with("denied_hosts:", "denyed_hosts:"), "denyed_hosts: unknown key");
  refused(with("type: github", "type: gitlab"), "providers[1].type");
  refused(with("required: true", "required: maybe"), "providers[0].required");
  refused(with("access: read-only", "access: sometimes"), "sometimes");
  refused(with("version: 1", "version: 2"), "version");
  refused(with("command: [demo]", "command: []"), "command");
  refused(with("name: demo", "name: Demo Agent"), "name");
}

TEST_CASE("apply_preset fills what the user did not give") {
  auto p = parse_agent_preset(kMinimal, "demo.yaml");
  json spec = {{"image", "mine"}, {"env", {{"DEMO_BASE_URL", "http://elsewhere"}}}};
  apply_preset(p, spec);
  CHECK(spec["image"] == "mine");
  CHECK(spec["command"] == json::array({"demo"}));
  CHECK(spec["env"]["DEMO_BASE_URL"] == "http://elsewhere");
  CHECK(spec["labels"]["agent"] == "demo");
  CHECK(spec["policy"].get<std::string>().find("api.github.com") != std::string::npos);
  json plain = json::object();
  apply_preset(p, plain);
  CHECK(plain["image"] == "localhost/bulwark/agent:latest");
  CHECK(plain["env"]["DEMO_BASE_URL"] == "https://inference.local");
}

TEST_CASE("providers: an existing one is attached, else one is created from the environment") {
  auto p = parse_agent_preset(kMinimal, "demo.yaml");
  SUBCASE("from the environment, with the base URL variable") {
    auto plan = plan_providers(p, {}, {},
                               {{"ANTHROPIC_API_KEY", "sk-ant-1"}, {"ANTHROPIC_BASE_URL", "https://proxy.corp"},
                                {"GH_TOKEN", "ghp_1"}, {"GITHUB_TOKEN", "ghp_2"}});
    REQUIRE(plan.attach.size() == 2);
    CHECK(plan.warnings.empty());
    CHECK(plan.attach[0].create);
    CHECK(plan.attach[0].inference);
    CHECK(plan.attach[0].body == json{{"name", "anthropic"}, {"type", "anthropic"},
                                      {"credentials", {{"ANTHROPIC_API_KEY", "sk-ant-1"}}}, {"base_url", "https://proxy.corp"}});
    CHECK(attach_line(plan.attach[0]) == "attached provider anthropic (from ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL)");
    // GITHUB_TOKEN and GH_TOKEN are aliases: the first present one only.
    CHECK(plan.attach[1].body["credentials"] == json{{"GITHUB_TOKEN", "ghp_2"}});
    CHECK_FALSE(plan.attach[1].inference);
    auto routes = sandbox_routes(plan, false);
    REQUIRE(routes);
    CHECK((*routes)["routes"][0]["match"] == "*");
    CHECK((*routes)["routes"][0]["backends"] == json::array({{{"provider", "anthropic"}, {"privacy", "any"}}}));
    CHECK_FALSE(sandbox_routes(plan, true));  // the operator's global table decides
  }
  SUBCASE("existing providers win, the one named like the need first") {
    std::vector<json> existing = {{{"name", "claude-team"}, {"type", "anthropic"}},
                                  {{"name", "anthropic"}, {"type", "anthropic"}},
                                  {{"name", "gh"}, {"type", "github"}}};
    auto plan = plan_providers(p, existing, {}, {{"ANTHROPIC_API_KEY", "sk-ant-1"}});
    REQUIRE(plan.attach.size() == 2);
    CHECK(plan.attach[0].name == "anthropic");
    CHECK_FALSE(plan.attach[0].create);
    CHECK(attach_line(plan.attach[0]) == "attached provider anthropic (existing anthropic provider)");
    CHECK(plan.attach[1].name == "gh");
  }
  SUBCASE("--provider of the same type replaces the need") {
    std::vector<json> existing = {{{"name", "claude-team"}, {"type", "anthropic"}}};
    auto plan = plan_providers(p, existing, {"claude-team"}, {{"ANTHROPIC_API_KEY", "sk-ant-1"}});
    CHECK(plan.attach.empty());
  }
  SUBCASE("a required provider found nowhere is a warning that says what to do; an optional one is silent") {
    auto plan = plan_providers(p, {}, {}, {});
    CHECK(plan.attach.empty());
    REQUIRE(plan.warnings.size() == 1);
    CHECK(plan.warnings[0].find("ANTHROPIC_API_KEY or CLAUDE_API_KEY") != std::string::npos);
    CHECK_FALSE(sandbox_routes(plan, false));
  }
  SUBCASE("a provider of another type holding the name is refused, not overwritten") {
    std::vector<json> existing = {{{"name", "anthropic"}, {"type", "generic"}}};
    CHECK_THROWS_AS(plan_providers(p, existing, {}, {{"ANTHROPIC_API_KEY", "sk-ant-1"}}), CliError);
  }
}

TEST_CASE("copilot: its own token variable and one of the github aliases become the provider's credentials") {
  auto copilot = load_preset("copilot", {BULWARK_PRESETS_SOURCE});
  auto plan = plan_providers(copilot, {}, {},
                             {{"COPILOT_GITHUB_TOKEN", "ghp_c"}, {"GH_TOKEN", "ghp_h"}, {"GITHUB_TOKEN", "ghp_g"}});
  REQUIRE(plan.attach.size() == 1);
  CHECK(plan.attach[0].name == "github");
  CHECK(plan.attach[0].body["credentials"] == json{{"COPILOT_GITHUB_TOKEN", "ghp_c"}, {"GH_TOKEN", "ghp_h"}});
  CHECK_FALSE(sandbox_routes(plan, false));  // github is no inference provider: nothing to route
}

TEST_CASE("presets are looked for in BULWARK_PRESETS_DIR, next to the binary, then in the install and source trees") {
  auto dirs = preset_dirs({{"BULWARK_PRESETS_DIR", "/opt/presets"}}, "/usr/local/bin");
  REQUIRE(dirs.size() >= 3);
  CHECK(dirs[0] == "/opt/presets");
  CHECK(dirs[1] == "/usr/local/bin/presets");
  CHECK(dirs[2] == "/usr/local/bin/../share/bulwark/presets");
  CHECK(preset_dirs({}, "/usr/local/bin")[0] == "/usr/local/bin/presets");
  try {
    load_presets({"/nonexistent/a", "/nonexistent/b"});
    FAIL("no error");
  } catch (const CliError& e) {
    CHECK(e.exit_code == kUsage);
    CHECK(e.message.find("/nonexistent/b") != std::string::npos);
    CHECK(e.message.find("BULWARK_PRESETS_DIR") != std::string::npos);
  }
  try {
    load_preset("nope", {BULWARK_PRESETS_SOURCE});
    FAIL("no error");
  } catch (const CliError& e) {
    CHECK(e.message.find("claude-code") != std::string::npos);
  }
}
