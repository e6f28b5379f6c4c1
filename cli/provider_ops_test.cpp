#include "cli/provider_ops.h"

#include <doctest/doctest.h>

#include "cli/client.h"

using namespace bulwark::cli;
using nlohmann::json;

namespace {
std::string usage_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const CliError& e) {
    CHECK(e.exit_code == kUsage);
    return e.message;
  }
  return "(accepted)";
}
}  // namespace

TEST_CASE("provider create: --credential and --from-env become the body; only names are reported") {
  std::map<std::string, std::string> env{{"ANTHROPIC_API_KEY", "sk-ant-secret"}, {"CLAUDE_API_KEY", "other"}, {"HOME", "/root"}};
  ProviderFlags f{.name = "claude", .type = "anthropic", .from_env = true};
  auto r = provider_create_body(f, env);
  CHECK(r.body == json{{"name", "claude"}, {"type", "anthropic"}, {"credentials", {{"ANTHROPIC_API_KEY", "sk-ant-secret"}}}});
  CHECK(r.taken == std::vector<std::string>{"ANTHROPIC_API_KEY"});

  // An explicit --credential wins over the environment for the same key.
  f.credentials = {"ANTHROPIC_API_KEY=sk-explicit", "EXTRA=x"};
  f.base_url = "https://proxy.example";
  r = provider_create_body(f, env);
  CHECK(r.body["credentials"] == json{{"ANTHROPIC_API_KEY", "sk-explicit"}, {"EXTRA", "x"}});
  CHECK(r.body["base_url"] == "https://proxy.example");
  CHECK(r.taken.empty());

  // GH_TOKEN when GITHUB_TOKEN is absent.
  r = provider_create_body(ProviderFlags{.name = "gh", .type = "github", .from_env = true}, {{"GH_TOKEN", "ghp_1"}});
  CHECK(r.taken == std::vector<std::string>{"GH_TOKEN"});
  // Without --from-env nothing is read from the environment.
  r = provider_create_body(ProviderFlags{.name = "o", .type = "generic", .base_url = "http://127.0.0.1:11434"}, env);
  CHECK(r.body["credentials"].empty());
}

TEST_CASE("provider create: --from-env that finds nothing names the variables it looked for") {
  auto msg = usage_error([] { provider_create_body(ProviderFlags{.name = "c", .type = "anthropic", .from_env = true}, {{"ANTHROPIC_API_KEY", ""}}); });
  CHECK_MESSAGE(msg.find("ANTHROPIC_API_KEY, CLAUDE_API_KEY") != std::string::npos, msg);
  msg = usage_error([] { provider_create_body(ProviderFlags{.name = "g", .type = "generic", .from_env = true}, {}); });
  CHECK_MESSAGE(msg.find("--credential") != std::string::npos, msg);
  // With a --credential, finding nothing is fine.
  CHECK(usage_error([] {
          provider_create_body(ProviderFlags{.name = "c", .type = "openai", .credentials = {"OPENAI_API_KEY=k"}, .from_env = true}, {});
        }) == "(accepted)");
  CHECK(usage_error([] { provider_create_body(ProviderFlags{.name = "c", .type = "openai", .credentials = {"NOEQUALS"}}, {}); })
            .find("--credential") != std::string::npos);
  CHECK(usage_error([] { provider_create_body(ProviderFlags{.name = "c", .type = "openai", .credentials = {"K="}}, {}); })
            .find("--remove-credential K") != std::string::npos);
}

TEST_CASE("provider update: set, remove (value \"\"), base URL, and nothing to change") {
  ProviderFlags f{.name = "x", .credentials = {"A=1"}, .remove = {"B"}, .base_url = ""};
  auto r = provider_update_body(f, "", {});
  CHECK(r.body == json{{"credentials", {{"A", "1"}, {"B", ""}}}, {"base_url", ""}});
  r = provider_update_body(ProviderFlags{.name = "x", .from_env = true}, "openai", {{"OPENAI_API_KEY", "sk-new"}});
  CHECK(r.body == json{{"credentials", {{"OPENAI_API_KEY", "sk-new"}}}});
  CHECK(r.taken == std::vector<std::string>{"OPENAI_API_KEY"});
  CHECK(usage_error([] { provider_update_body(ProviderFlags{.name = "x"}, "", {}); }).find("at least one") != std::string::npos);
  CHECK(usage_error([] { provider_update_body(ProviderFlags{.name = "x", .credentials = {"A=1"}, .remove = {"A"}}, "", {}); })
            .find("both name A") != std::string::npos);
  CHECK(usage_error([] { provider_update_body(ProviderFlags{.name = "x", .from_env = true}, "nvidia", {}); })
            .find("NVIDIA_API_KEY") != std::string::npos);
}

TEST_CASE("the environment block becomes a map") {
  char a[] = "A=1", b[] = "B=x=y", c[] = "NOVALUE";
  char* envp[] = {a, b, c, nullptr};
  auto env = environment(envp);
  CHECK(env == std::map<std::string, std::string>{{"A", "1"}, {"B", "x=y"}});
}

TEST_CASE("the provider table prints the masked values the gateway sent") {
  auto p = json::parse(R"({"name":"claude","type":"anthropic","base_url":"","credentials":{"ANTHROPIC_API_KEY":"sk-****wxyz"},
                           "updated_at":"2025-01-02T03:04:05Z"})");
  auto t = provider_table({p});
  CHECK(t.find("NAME") == 0);
  CHECK(t.find("claude  anthropic  -         ANTHROPIC_API_KEY=sk-****wxyz  2025-01-02T03:04:05Z") != std::string::npos);
}
