// Time from POST /v1/sandboxes to READY (and to EXITED for `true`) through the real suite, next to
// a plain `podman run --rm IMAGE true` on the same podman, measured in the same run.
// Usage: bench_create_to_ready [iterations]   (prints medians, p90 and the ratio)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using Clock = std::chrono::steady_clock;

namespace {
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
struct Stats {
  double p50, p90;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 9 / 10)]};
}
}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 20;
  if (n < 1) n = 20;
  Suite suite;
  std::vector<double> ready, exited, baseline;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    auto s = suite.create({{"command", {"sleep", "600"}}});
    suite.wait_phase(s["sandbox_id"], {"READY"}, std::chrono::seconds(60));
    ready.push_back(ms_since(t0));
    suite.client().Delete("/v1/sandboxes/" + s["sandbox_id"].get<std::string>());

    t0 = Clock::now();
    s = suite.create({{"command", {"true"}}});
    suite.wait_phase(s["sandbox_id"], {"EXITED"}, std::chrono::seconds(60));
    exited.push_back(ms_since(t0));
    suite.client().Delete("/v1/sandboxes/" + s["sandbox_id"].get<std::string>());

    t0 = Clock::now();
    auto p = Process::spawn({.argv = {"podman", "run", "--rm", "--network", "host", "localhost/bulwark/base:latest", "true"}});
    if (p.wait() != 0) {
      std::fprintf(stderr, "podman run failed\n");
      return 1;
    }
    baseline.push_back(ms_since(t0));
  }
  auto r = stats(ready), e = stats(exited), b = stats(baseline);
  std::printf("create_to_ready (n=%d, 20 ms client polling granularity)\n", n);
  std::printf("%-44s %9s %9s %8s\n", "", "p50 ms", "p90 ms", "x base");
  std::printf("%-44s %9.1f %9.1f %8s\n", "baseline: podman run --rm IMAGE true", b.p50, b.p90, "1.00");
  std::printf("%-44s %9.1f %9.1f %8.2f\n", "bulwark: POST -> READY (sleep 600)", r.p50, r.p90, r.p50 / b.p50);
  std::printf("%-44s %9.1f %9.1f %8.2f\n", "bulwark: POST -> EXITED (true)", e.p50, e.p90, e.p50 / b.p50);
  return 0;
}
