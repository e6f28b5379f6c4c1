// The provider environment: the pure merge, and the launch-time fetch against a real nats-server
// with a stub gateway on bulwark.provider.env.<id>.
#include "supervisor/provider_env.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "bulwark/v1/inference.pb.h"
#include "shared/subjects.h"
#include "supervisor/contain.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::supervisor;
using namespace std::chrono_literals;

namespace {

bool has(const std::vector<std::string>& env, const std::string& kv) {
  return std::find(env.begin(), env.end(), kv) != env.end();
}

constexpr char kSandbox[] = "sbx-providers";

}  // namespace

TEST_CASE("provider variables are merged into the agent's environment; reserved and bad names are refused") {
  std::vector<std::string> env = {"HOME=/sandbox", "GITHUB_TOKEN=from-spec", "HTTPS_PROXY=http://10.200.0.1:3128",
                                  "PATH=/usr/bin"};
  auto m = merge_provider_env(env, {{"GITHUB_TOKEN", "ghp_secret"},
                                    {"GH_TOKEN", "ghp_secret"},
                                    {"HTTPS_PROXY", "http://evil:1"},
                                    {"https_proxy", "http://evil:1"},
                                    {"NO_PROXY", "inference.local"},
                                    {"SSL_CERT_FILE", "/tmp/mine.pem"},
                                    {"LD_PRELOAD", "/tmp/x.so"},
                                    {"PATH", "/tmp"},
                                    {"BULWARK_NATS_URL", "nats://evil"},
                                    {"1BAD", "x"},
                                    {"A=B", "x"},
                                    {"NUL_VALUE", std::string("a\0b", 3)}});
  CHECK(has(m.env, "HOME=/sandbox"));
  CHECK(has(m.env, "GITHUB_TOKEN=ghp_secret"));
  CHECK_FALSE(has(m.env, "GITHUB_TOKEN=from-spec"));  // the provider's value wins
  CHECK(has(m.env, "GH_TOKEN=ghp_secret"));
  CHECK(has(m.env, "HTTPS_PROXY=http://10.200.0.1:3128"));
  CHECK(has(m.env, "PATH=/usr/bin"));
  CHECK(m.env.size() == 5);
  CHECK(m.set == std::vector<std::string>{"GH_TOKEN", "GITHUB_TOKEN"});
  CHECK(m.refused.size() == 10);
  for (const auto& r : m.refused) CHECK(r.find("ghp_secret") == std::string::npos);  // names only
}

TEST_CASE("the agent's environment keeps inference.local on the proxy and trusts the bundle in Node too") {
  auto env = with_proxy_env({"NO_PROXY=inference.local,localhost", "no_proxy=inference.local"}, "http://10.200.0.1:3128");
  for (const auto& e : env)
    if (e.rfind("NO_PROXY=", 0) == 0 || e.rfind("no_proxy=", 0) == 0) CHECK(e.find("inference.local") == std::string::npos);
  CHECK(has(env, "HTTPS_PROXY=http://10.200.0.1:3128"));
  if (::access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0)
    CHECK(has(env, "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt"));
}

TEST_CASE("--provider-env takes auto, required or off") {
  CHECK(parse_provider_env_mode("auto") == ProviderEnvMode::kAuto);
  CHECK(parse_provider_env_mode("required") == ProviderEnvMode::kRequired);
  CHECK(parse_provider_env_mode("off") == ProviderEnvMode::kOff);
  CHECK_THROWS_AS(parse_provider_env_mode("yes"), Error);
}

TEST_CASE("fetching the provider environment: answered, nobody there, not found, late gateway, off") {
  testing::NatsServer nats;
  auto bus = Bus::connect({nats.url(), "supervisor", 5s});
  auto gw = Bus::connect({nats.url(), "gateway", 5s});
  ProviderEnvOptions quick;
  quick.request_timeout = 500ms;
  quick.required_for = 3000ms;
  quick.retry_every = 100ms;

  SUBCASE("nobody answers: auto goes on without, required fails after retrying") {
    quick.mode = ProviderEnvMode::kAuto;
    CHECK(fetch_provider_env(*bus, kSandbox, quick).env.empty());
    quick.mode = ProviderEnvMode::kRequired;
    quick.required_for = 600ms;
    auto started = std::chrono::steady_clock::now();
    try {
      fetch_provider_env(*bus, kSandbox, quick);
      FAIL("required must fail when nobody answers");
    } catch (const Error& e) {
      CHECK(e.code() == Code::kUnavailable);
      CHECK(std::string(e.what()).find("required and gateway-api did not provide it") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - started >= 500ms);
  }

  SUBCASE("answered: every mode but off gets the variables and the provider names") {
    auto sub = gw->serve<v1::ProviderEnvRequest, v1::ProviderEnvReply>(
        subjects::provider_env(kSandbox), subjects::kGatewayQueue, [](const v1::ProviderEnvRequest& r) {
          CHECK(r.sandbox_id() == kSandbox);
          v1::ProviderEnvReply rep;
          (*rep.mutable_env())["GITHUB_TOKEN"] = "ghp_x";
          rep.add_providers("gh");
          return rep;
        });
    gw->flush();
    for (auto mode : {ProviderEnvMode::kAuto, ProviderEnvMode::kRequired}) {
      quick.mode = mode;
      auto pe = fetch_provider_env(*bus, kSandbox, quick);
      CHECK(pe.env.at("GITHUB_TOKEN") == "ghp_x");
      CHECK(pe.providers == std::vector<std::string>{"gh"});
    }
    quick.mode = ProviderEnvMode::kOff;
    CHECK(fetch_provider_env(*bus, kSandbox, quick).env.empty());
  }

  SUBCASE("not found: auto goes on without, required fails at once") {
    auto sub = gw->serve<v1::ProviderEnvRequest, v1::ProviderEnvReply>(
        subjects::provider_env(kSandbox), "", [](const v1::ProviderEnvRequest&) -> v1::ProviderEnvReply {
          throw Error(Code::kNotFound, "no sandbox sbx-providers");
        });
    gw->flush();
    quick.mode = ProviderEnvMode::kAuto;
    CHECK(fetch_provider_env(*bus, kSandbox, quick).env.empty());
    quick.mode = ProviderEnvMode::kRequired;
    auto started = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(fetch_provider_env(*bus, kSandbox, quick), doctest::Contains("no sandbox sbx-providers"), Error);
    CHECK(std::chrono::steady_clock::now() - started < 1000ms);
  }

  SUBCASE("required waits for a gateway that comes up late") {
    quick.mode = ProviderEnvMode::kRequired;
    Subscription sub;
    std::thread late([&] {
      std::this_thread::sleep_for(700ms);
      sub = gw->serve<v1::ProviderEnvRequest, v1::ProviderEnvReply>(
          subjects::provider_env(kSandbox), "", [](const v1::ProviderEnvRequest&) {
            v1::ProviderEnvReply rep;
            (*rep.mutable_env())["TOKEN"] = "t";
            return rep;
          });
    });
    auto pe = fetch_provider_env(*bus, kSandbox, quick);
    late.join();
    CHECK(pe.env.at("TOKEN") == "t");
  }
}
