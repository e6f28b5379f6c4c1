// Every service process starts, answers its health subject, and the ones whose work comes later
// say so with an explicit unimplemented error instead of silence.
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

TEST_CASE("the services not built yet answer health and reply unimplemented naming their issue") {
  NatsServer nats;
  TempDir dir;
  struct Case {
    std::string binary, service, subject, words;
  };
  std::vector<Case> cases = {
      {"bulwark-driver-k8s", "driver-kubernetes", "bulwark.driver.kubernetes-t.create", "compute-drivers issue"},
      {"bulwark-driver-vm", "driver-vm", "bulwark.driver.vm-t.create", "compute-drivers issue"},
  };
  std::vector<Process> procs;
  for (const auto& c : cases) {
    std::vector<std::string> argv = {bin(c.binary), "--nats-url", nats.url()};
    if (c.service.rfind("driver-", 0) == 0) {
      argv.push_back("--driver-id");
      argv.push_back(c.service.substr(7) + "-t");
    }
    procs.push_back(Process::spawn({.argv = argv, .output_file = dir.file(c.service + ".log")}));
  }
  auto bus = Bus::connect({nats.url(), "t"});
  for (const auto& c : cases) {
    CAPTURE(c.service);
    auto h = health(*bus, c.service);
    CHECK(h.service() == c.service);
    CHECK(h.status() == "ok");
    try {
      bus->request(c.subject, "", 2s);
      FAIL("expected unimplemented");
    } catch (const Error& e) {
      CHECK(e.code() == Code::kUnimplemented);
      CHECK_MESSAGE(std::string(e.what()).find(c.words) != std::string::npos, e.what());
    }
  }
  // SIGTERM stops each one cleanly.
  for (auto& p : procs) CHECK(p.stop(5s) == 0);
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
