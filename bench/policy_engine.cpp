// Decisions per second of the compiled policy engine with 1,000 L7 rules, next to a baseline
// measured in the same run: the same decisions by a straightforward scan of the parsed policy
// (every entry, endpoint and rule in order, fnmatch for globs), as a first implementation would.
// Usage: bench_policy_engine [decisions]
#include <fnmatch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "shared/policy.h"
#include "shared/policy_engine.h"

using namespace bulwark;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kEntries = 50, kEndpoints = 2, kRules = 10;  // 50 * 2 * 10 = 1,000 rules

std::string make_policy() {
  std::string y = "version: 1\nnetwork_policies:\n";
  for (int e = 0; e < kEntries; ++e) {
    y += "  svc" + std::to_string(e) + ":\n    endpoints:\n";
    for (int p = 0; p < kEndpoints; ++p) {
      y += "      - host: api" + std::to_string(p) + ".svc" + std::to_string(e) + ".example.com\n        port: 443\n"
           "        protocol: rest\n        rules:\n";
      for (int r = 0; r < kRules; ++r)
        y += std::string("          - allow: { method: ") + (r % 2 ? "POST" : "GET") + ", path: \"/v" + std::to_string(r) +
             "/items/*/detail/**\" }\n";
    }
    y += "    binaries:\n      - { path: /usr/bin/tool" + std::to_string(e) + " }\n";
  }
  return y;
}

struct Query {
  std::string host, method, path;
  std::vector<std::string> chain;
};

// The baseline: scan everything, first match wins.
bool naive_allows(const policy::Policy& p, const Query& q) {
  for (const auto& np : p.network_policies) {
    bool bin = false;
    for (const auto& b : np.binaries)
      for (const auto& exe : q.chain) bin = bin || fnmatch(b.path.c_str(), exe.c_str(), FNM_PATHNAME) == 0;
    if (!bin) continue;
    for (const auto& ep : np.endpoints) {
      if (!policy::host_matches(ep.host, q.host)) continue;
      for (const auto& r : ep.rules)
        if (r.method == q.method && fnmatch(r.path.c_str(), q.path.c_str(), 0) == 0) return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 200000;
  if (n < 1000) n = 200000;
  auto parsed = policy::parse_policy(make_policy(), "bench.yaml");
  auto t0 = Clock::now();
  auto compiled = policy::CompiledPolicy::compile(parsed);
  double compile_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

  std::mt19937 rng(42);
  std::vector<Query> qs(4096);
  for (auto& q : qs) {
    int e = static_cast<int>(rng() % kEntries), p = static_cast<int>(rng() % kEndpoints), r = static_cast<int>(rng() % (kRules + 2));
    q.host = "api" + std::to_string(p) + ".svc" + std::to_string(e) + ".example.com";
    q.method = (r % 2) ? "POST" : "GET";
    q.path = "/v" + std::to_string(r) + "/items/" + std::to_string(rng() % 1000) + "/detail/x/y";  // r >= 10: denied
    q.chain = {"/usr/bin/tool" + std::to_string(rng() % 4 == 0 ? (e + 1) % kEntries : e), "/bin/bash"};
  }

  long allowed_engine = 0, allowed_naive = 0;
  t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    const auto& q = qs[static_cast<size_t>(i) % qs.size()];
    auto c = compiled->decide_connect(q.host, 443, q.chain);
    if (c.allow && policy::decide_request(c, q.method, q.path).allow) ++allowed_engine;
  }
  double engine_s = std::chrono::duration<double>(Clock::now() - t0).count();
  long naive_n = n / 10;  // the scan is slow; fewer rounds give the same rate
  t0 = Clock::now();
  for (long i = 0; i < naive_n; ++i)
    if (naive_allows(parsed, qs[static_cast<size_t>(i) % qs.size()])) ++allowed_naive;
  double naive_s = std::chrono::duration<double>(Clock::now() - t0).count();

  double engine_rate = static_cast<double>(n) / engine_s, naive_rate = static_cast<double>(naive_n) / naive_s;
  std::printf("policy engine, %d rules (%d entries x %d endpoints x %d rules), compile %.1f ms\n", kEntries * kEndpoints * kRules,
              kEntries, kEndpoints, kRules, compile_ms);
  std::printf("  engine (connect + request): %.0f decisions/s (%.0f ns each), %.1f%% allowed\n", engine_rate, 1e9 / engine_rate,
              100.0 * static_cast<double>(allowed_engine) / static_cast<double>(n));
  std::printf("  baseline linear scan:       %.0f decisions/s (%.0f ns each), %.1f%% allowed\n", naive_rate, 1e9 / naive_rate,
              100.0 * static_cast<double>(allowed_naive) / static_cast<double>(naive_n));
  std::printf("  ratio engine/baseline: %.1fx\n", engine_rate / naive_rate);
  return 0;
}
