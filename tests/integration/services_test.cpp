// Every service process starts and answers its health subject; one that cannot work says why and
// exits instead of running silently.
#include <doctest/doctest.h>

#include "bulwark/v1/common.pb.h"
#include "shared/bus.h"
#include "shared/subjects.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;

namespace {
v1::HealthReply health(Bus& bus, const std::string& service) {
  v1::HealthReply r;
  wait_until([&] {
    try {
      r = bus.request<v1::HealthReply>(subjects::health(service), v1::HealthRequest(), 300ms);
      return true;
    } catch (const Error&) {
      return false;
    }
  }, 10s);
  return r;
}
}  // namespace

TEST_CASE("drivers whose backend is missing refuse to start, saying what to set") {
  NatsServer nats;
  TempDir dir;
  struct Case {
    std::vector<std::string> argv;
    std::string words;
  };
  std::vector<Case> cases = {
      {{bin("bulwark-driver-k8s"), "--kubeconfig", dir.file("none/kubeconfig")}, "cannot read kubeconfig"},
      {{bin("bulwark-driver-vm"), "--state-dir", dir.file("vm"), "--kernel", dir.file("none/vmlinuz"), "--initrd",
        dir.file("none/initrd.img")},
       "scripts/build-vm-initrd"},
  };
  for (auto& c : cases) {
    CAPTURE(c.argv[0]);
    c.argv.insert(c.argv.end(), {"--nats-url", nats.url()});
    auto log = dir.file("driver.log");
    auto p = Process::spawn({.argv = c.argv, .output_file = log});
    CHECK(p.wait() == 1);
    CHECK_MESSAGE(read_file(log).find(c.words) != std::string::npos, read_file(log));
  }
}

TEST_CASE("bad flags exit 2 naming the flag; --log-format json writes one JSON object per line") {
  NatsServer nats;
  TempDir dir;
  auto bad = Process::spawn({.argv = {bin("bulwark-scheduler"), "--log-format", "xml"}, .output_file = dir.file("bad.log")});
  CHECK(bad.wait() == 2);
  CHECK(read_file(dir.file("bad.log")).find("--log-format") != std::string::npos);

  auto absent = Process::spawn({.argv = {bin("bulwark-scheduler"), "--nats-url", "nats://127.0.0.1:" + std::to_string(free_port()),
                                         "--nats-connect-timeout", "0.5"},
                                .output_file = dir.file("absent.log")});
  CHECK(absent.wait() == 1);
  CHECK(read_file(dir.file("absent.log")).find("cannot connect to NATS") != std::string::npos);

  auto p = Process::spawn({.argv = {bin("bulwark-scheduler"), "--nats-url", nats.url(), "--log-format", "json"},
                           .output_file = dir.file("json.log")});
  auto bus = Bus::connect({nats.url(), "t"});
  CHECK(health(*bus, "scheduler").service() == "scheduler");
  CHECK(p.stop(5s) == 0);
  auto text = read_file(dir.file("json.log"));
  std::istringstream lines(text);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), line);
    CHECK(j["service"] == "scheduler");
    CHECK(j.contains("level"));
    CHECK(j.contains("msg"));
    ++n;
  }
  CHECK(n >= 2);  // started, stopping, stopped
}
