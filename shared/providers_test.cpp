#include "shared/providers.h"

#include <doctest/doctest.h>

using namespace bulwark::providers;

TEST_CASE("every type the issue names is known, with its API style") {
  for (auto t : {"anthropic", "openai", "nvidia", "github", "generic"}) CHECK_MESSAGE(find(t) != nullptr, t);
  CHECK(find("azure") == nullptr);
  CHECK(find("anthropic")->api == ApiStyle::kAnthropic);
  CHECK(find("anthropic")->auth_header == "x-api-key");
  CHECK_FALSE(find("anthropic")->bearer);
  CHECK(find("openai")->bearer);
  CHECK_FALSE(find("github")->inference);
  CHECK(type_names() == "anthropic|openai|nvidia|github|generic");
}

TEST_CASE("discovery keeps the first alias present and ignores empty values") {
  std::map<std::string, std::string> env{{"GH_TOKEN", "gh-2"}, {"GITHUB_TOKEN", ""}, {"OPENAI_API_KEY", "sk-1"}};
  CHECK(discover(*find("github"), env) == std::map<std::string, std::string>{{"GH_TOKEN", "gh-2"}});
  env["GITHUB_TOKEN"] = "gh-1";
  CHECK(discover(*find("github"), env) == std::map<std::string, std::string>{{"GITHUB_TOKEN", "gh-1"}});
  CHECK(discover(*find("anthropic"), env).empty());
  CHECK(discover(*find("generic"), env).empty());
}

TEST_CASE("the backend key: the type's variable, API_KEY, the only one, or none") {
  CHECK(backend_key(*find("openai"), {{"OPENAI_API_KEY", "a"}, {"OTHER", "b"}}) == "a");
  CHECK(backend_key(*find("generic"), {{"API_KEY", "k"}, {"OTHER", "b"}}) == "k");
  CHECK(backend_key(*find("generic"), {{"TOKEN", "t"}}) == "t");
  CHECK_FALSE(backend_key(*find("generic"), {}).has_value());
  CHECK_FALSE(backend_key(*find("generic"), {{"A", "1"}, {"B", "2"}}).has_value());
}

TEST_CASE("masking never shows a short secret and hides the middle of a long one") {
  CHECK(mask("short") == "****");
  CHECK(mask("sk-ant-api03-abcdefghijklmnop") == "sk-****mnop");
  CHECK(mask("sk-ant-api03-abcdefghijklmnop").find("abcdefgh") == std::string::npos);
}

TEST_CASE("names and credential keys") {
  CHECK(check_name("anthropic-prod_2") == "");
  CHECK(check_name("") != "");
  CHECK(check_name("Prod") != "");
  CHECK(check_name("-x") != "");
  CHECK(check_name(std::string(64, 'a')) != "");
  CHECK(check_credential_key("GITHUB_TOKEN") == "");
  CHECK(check_credential_key("1X") != "");
  CHECK(check_credential_key("A-B") != "");
  CHECK(check_credential_key("") != "");
}
