// Route tables and backend selection.
#include <doctest/doctest.h>

#include "services/privacy-router/test_config.h"
#include "services/privacy-router/routes.h"

using namespace bulwark;
using namespace bulwark::privacy_router;
using bulwark::privacy_router::testing::B;
using bulwark::privacy_router::testing::config;

namespace {


std::vector<std::string> providers_of(const Selection& s) {
  std::vector<std::string> out;
  for (const auto& b : s.candidates) out.push_back(b.provider());
  return out;
}

const std::string kSid = "0123456789abcdef";

}  // namespace

TEST_CASE("glob: '*' is any run of characters, everything else exact") {
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*", "gpt-4o"));
  CHECK(glob_match("gpt-*", "gpt-4o-mini"));
  CHECK(glob_match("gpt-*", "gpt-"));
  CHECK_FALSE(glob_match("gpt-*", "gpt"));
  CHECK(glob_match("*-mini", "gpt-4o-mini"));
  CHECK(glob_match("claude-*-sonnet-*", "claude-3-5-sonnet-latest"));
  CHECK_FALSE(glob_match("claude-*-sonnet-*", "claude-3-opus-latest"));
  CHECK(glob_match("a*b*c", "aXXbYYbZZc"));
  CHECK_FALSE(glob_match("a*b*c", "aXXbYY"));
  CHECK(glob_match("llama3.2:1b", "llama3.2:1b"));
  CHECK_FALSE(glob_match("llama3.2:1b", "llama3.2:1b-q4"));
  CHECK_FALSE(glob_match("gpt-4o", "GPT-4o"));
  CHECK(glob_match("**", "x"));
}

TEST_CASE("the sandbox's routes come before the global ones, in order") {
  RouteTable t;
  CHECK(t.put("global", config("", {{"gpt-*", {{"g-openai", "", "any", 1}}}, {"*", {{"g-any", "", "any", 1}}}})));
  CHECK(t.put("sandbox." + kSid, config("", {{"gpt-4o", {{"s-openai", "", "any", 1}}}})));
  CHECK_FALSE(t.put("elsewhere", v1::InferenceConfig()));

  Selection s = t.select(kSid, "gpt-4o");
  CHECK(s.matched);
  CHECK(s.scope == "sandbox");
  CHECK(s.route_label() == "gpt-4o (sandbox)");
  CHECK(providers_of(s) == std::vector<std::string>{"s-openai"});

  s = t.select(kSid, "gpt-4o-mini");  // not the sandbox's exact route: the global glob
  CHECK(s.scope == "global");
  CHECK(s.match == "gpt-*");
  CHECK(providers_of(s) == std::vector<std::string>{"g-openai"});

  s = t.select("fedcba9876543210", "gpt-4o");  // another sandbox sees only global routes
  CHECK(s.match == "gpt-*");
  s = t.select(kSid, "claude");
  CHECK(s.match == "*");

  CHECK(t.remove("sandbox." + kSid));
  CHECK(t.select(kSid, "gpt-4o").scope == "global");
  CHECK(t.remove("global"));
  CHECK_FALSE(t.select(kSid, "gpt-4o").matched);
  CHECK(t.empty());
}

TEST_CASE("candidates go cheapest first and ties keep their listed order") {
  RouteTable t;
  t.put("global", config("", {{"*",
                               {{"c3-first", "", "any", 3},
                                {"c1-first", "", "any", 1},
                                {"c3-second", "", "any", 3},
                                {"c0", "", "any", 0},
                                {"c1-second", "", "any", 1},
                                {"c3-third", "", "any", 3}}}}));
  CHECK(providers_of(t.select(kSid, "m")) ==
        std::vector<std::string>{"c0", "c1-first", "c1-second", "c3-first", "c3-second", "c3-third"});
}

TEST_CASE("a local-only sandbox keeps only local-only backends and says why others are left out") {
  RouteTable t;
  t.put("global", config("", {{"*", {{"cloud", "gpt-4o", "any", 1}, {"ollama", "llama", "local-only", 5}, {"unset", "", "", 0}}}}));
  Selection open = t.select(kSid, "m");
  CHECK_FALSE(open.local_only);
  CHECK(providers_of(open) == std::vector<std::string>{"unset", "cloud", "ollama"});

  t.put("sandbox." + kSid, config("local-only", {}));
  Selection s = t.select(kSid, "m");
  CHECK(s.local_only);
  CHECK(s.scope == "global");  // its own table has no routes: the global ones, restricted
  CHECK(providers_of(s) == std::vector<std::string>{"ollama"});
  REQUIRE(s.skipped.size() == 2);
  CHECK(s.skipped[0] == "unset: privacy is 'any' but this sandbox may use only local-only backends");
  CHECK(s.skipped[1].rfind("cloud: ", 0) == 0);

  // A global local-only table restricts every sandbox.
  RouteTable g;
  g.put("global", config("local-only", {{"*", {{"cloud", "", "any", 1}}}}));
  Selection none = g.select(kSid, "m");
  CHECK(none.matched);
  CHECK(none.candidates.empty());
  CHECK(none.skipped.size() == 1);
}

TEST_CASE("GET /v1/models lists exact matches and the explicit models of wildcard routes, once each") {
  RouteTable t;
  t.put("global", config("", {{"gpt-4o", {{"openai", "", "any", 1}}},
                              {"gpt-*", {{"openai", "gpt-4o-mini", "any", 1}, {"backup", "", "any", 2}}},
                              {"*", {{"ollama", "llama3.2:1b", "local-only", 1}, {"openai", "gpt-4o", "any", 2}}}}));
  t.put("sandbox." + kSid, config("", {{"mine", {{"ollama", "", "local-only", 1}}}, {"gpt-4o", {{"x", "", "any", 1}}}}));
  CHECK(t.models(kSid) == std::vector<std::string>{"mine", "gpt-4o", "gpt-4o-mini", "llama3.2:1b"});
  CHECK(t.models("fedcba9876543210") == std::vector<std::string>{"gpt-4o", "gpt-4o-mini", "llama3.2:1b"});

  t.put("sandbox." + kSid, config("local-only", {{"mine", {{"ollama", "", "local-only", 1}}}}));
  CHECK(t.models(kSid) == std::vector<std::string>{"mine", "llama3.2:1b"});
}

TEST_CASE("a backend whose type speaks another API is left out, with the reason") {
  const auto* openai = providers::find("openai");
  const auto* anthropic = providers::find("anthropic");
  const auto* github = providers::find("github");
  const auto* generic = providers::find("generic");
  CHECK(backend_unusable("o", "openai", openai, providers::ApiStyle::kOpenAi).empty());
  CHECK(backend_unusable("o", "openai", openai, providers::ApiStyle::kAnthropic) == "speaks openai, request is anthropic");
  CHECK(backend_unusable("a", "anthropic", anthropic, providers::ApiStyle::kOpenAi) == "speaks anthropic, request is openai");
  CHECK(backend_unusable("l", "generic", generic, providers::ApiStyle::kOpenAi).empty());
  CHECK(backend_unusable("g", "github", github, providers::ApiStyle::kOpenAi).find("serves no inference API") !=
        std::string::npos);
  CHECK(backend_unusable("z", "zzz", nullptr, providers::ApiStyle::kOpenAi) == "provider z has unknown type 'zzz'");
}
