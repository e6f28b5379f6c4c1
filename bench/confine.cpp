// What confinement adds to starting a command: `bulwark-supervisor --standalone --policy P -- true`
// (namespaces, veth, firewall, Landlock, identity, seccomp, egress proxy) next to running `true`
// directly, in the same run. Usage: bench_confine [iterations]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "shared/process.h"
#include "tests/support/support.h"

using namespace bulwark;
using Clock = std::chrono::steady_clock;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double time_run(const std::vector<std::string>& argv, const std::string& log) {
  auto t0 = Clock::now();
  auto p = Process::spawn({.argv = argv, .output_file = log});
  if (p.wait() != 0) {
    std::fprintf(stderr, "%s failed; see %s\n", argv[0].c_str(), log.c_str());
    std::exit(1);
  }
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 50;
  if (n < 1) n = 50;
  testing::TempDir dir("bulwark-bench-confine");
  std::string policy = dir.file("p.yaml");
  std::ofstream(policy) << "version: 1\nfilesystem_policy:\n  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc]\n"
                           "  read_write: [/tmp, /dev/null]\n";
  std::string sup = std::string(BULWARK_BIN_DIR) + "/bulwark-supervisor";
  std::vector<double> plain, confined;
  for (int i = 0; i < n; ++i) {
    plain.push_back(time_run({"/bin/true"}, dir.file("plain.log")));
    confined.push_back(time_run({sup, "--standalone", "--policy", policy, "--log-level", "warn", "--", "/bin/true"},
                                dir.file("confined.log")));
  }
  double p = median(plain), c = median(confined);
  std::printf("confine (n=%d, median wall time of the whole run)\n", n);
  std::printf("%-56s %9s %8s\n", "", "ms", "x base");
  std::printf("%-56s %9.2f %8s\n", "baseline: /bin/true", p, "1.00");
  std::printf("%-56s %9.2f %8.1f\n", "bulwark-supervisor --standalone --policy P -- /bin/true", c, c / p);
  std::printf("%-56s %9.2f\n", "added by confinement + supervisor start/stop", c - p);
  return 0;
}
