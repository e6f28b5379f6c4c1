// The real bulwark-supervisor with a gateway session (a real nats-server): the provider
// environment fetched at launch reaches the agent and nothing else, and inference.local travels
// from the agent's curl through the proxy and NATS to a fake privacy-router. Needs root (the
// supervisor builds namespaces and a veth pair), like supervisor_test.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include "bulwark/v1/inference.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"
#include "shared/process.h"
#include "shared/subjects.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Launch {
  testing::NatsServer nats;
  std::unique_ptr<Bus> bus = Bus::connect({nats.url(), "test", 5s});
  testing::TempDir dir{"bulwark-launch"};
  std::string id = "launch-" + std::to_string(::getpid());
  std::mutex mu;
  std::vector<v1::InferenceCall> calls;
  std::vector<v1::StateReport> reports;
  Subscription router, states;

  Launch() {
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::seconds(3600));
    // The fake privacy-router: one JSON answer naming what it was asked.
    router = bus->queue_subscribe(subjects::inference_call(id), subjects::kInferenceQueue, [this](Msg& m) {
      v1::InferenceCall c;
      if (!c.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) || !m.reply()) return;
      {
        std::lock_guard lock(mu);
        calls.push_back(c);
      }
      v1::InferenceFrame f;
      f.set_seq(0);
      f.mutable_head()->set_status(200);
      auto* h = f.mutable_head()->add_headers();
      h->set_name("Content-Type");
      h->set_value("application/json");
      bus->publish(m.reply(), f);
      f.Clear();
      f.set_seq(1);
      f.set_chunk("{\"routed\":\"" + c.path() + "\"}");
      bus->publish(m.reply(), f);
      f.Clear();
      f.set_seq(2);
      f.mutable_end();
      bus->publish(m.reply(), f);
    });
    states = bus->subscribe(subjects::sandbox_state(id), [this](Msg& m) {
      v1::StateReport r;
      if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu);
      reports.push_back(r);
    });
    bus->flush();
  }

  Process run(const std::string& mode, const std::string& script) {
    return Process::spawn({.argv = {std::string(BULWARK_BIN_DIR) + "/bulwark-supervisor", "--sandbox-id", id,
                                    "--nats-url", nats.url(), "--provider-env", mode, "--", "sh", "-c", script},
                           .output_file = dir.file("out.log")});
  }
  std::string output() { return slurp(dir.file("out.log")); }
};

}  // namespace

TEST_CASE("launch: the provider environment reaches the agent only; inference.local goes over NATS") {
  Launch l;
  auto gw = l.bus->serve<v1::ProviderEnvRequest, v1::ProviderEnvReply>(
      subjects::provider_env(l.id), subjects::kGatewayQueue, [&](const v1::ProviderEnvRequest& r) {
        CHECK(r.sandbox_id() == l.id);
        v1::ProviderEnvReply rep;
        (*rep.mutable_env())["GITHUB_TOKEN"] = "ghp_launchsecret";
        (*rep.mutable_env())["HTTPS_PROXY"] = "http://evil.example:1";
        rep.add_providers("gh");
        return rep;
      });
  l.bus->flush();
  Process sup = l.run("required",
                      "echo token=$GITHUB_TOKEN; echo proxy=$HTTPS_PROXY; echo noproxy=$NO_PROXY; "
                      "curl -sS --max-time 20 https://inference.local/v1/models?x=1; echo; echo agent-done; sleep 2");
  REQUIRE_MESSAGE(testing::wait_until([&] { return l.output().find("agent-done") != std::string::npos; }, 60s),
                  l.output());
  // Read while the agent sleeps: the supervisor's own environment never held the value.
  std::string own_env = slurp("/proc/" + std::to_string(sup.pid()) + "/environ");
  CHECK(own_env.find("ghp_launchsecret") == std::string::npos);
  CHECK(sup.wait_for(30s) == 0);
  std::string out = l.output();
  CHECK(out.find("token=ghp_launchsecret\n") != std::string::npos);
  CHECK(out.find("proxy=http://10.") != std::string::npos);  // a reserved name was not overridden
  CHECK(out.find("noproxy=localhost,127.0.0.1\n") != std::string::npos);
  CHECK(out.find("{\"routed\":\"/v1/models?x=1\"}") != std::string::npos);
  // The supervisor's log names the variable and the provider, never the value (only the agent's
  // own echo above shows it).
  CHECK(out.find("provider environment from gh: GITHUB_TOKEN") != std::string::npos);
  CHECK(out.find("HTTPS_PROXY: reserved for the supervisor") != std::string::npos);
  size_t first = out.find("ghp_launchsecret");
  CHECK(out.find("ghp_launchsecret", first + 1) == std::string::npos);
  std::lock_guard lock(l.mu);
  REQUIRE(l.calls.size() == 1);
  CHECK(l.calls[0].sandbox_id() == l.id);
  CHECK(l.calls[0].method() == "GET");
  CHECK(l.calls[0].path() == "/v1/models?x=1");
  CHECK(l.calls[0].binary().find("curl") != std::string::npos);
}

TEST_CASE("launch: --provider-env required and a gateway that refuses fails the launch with FAILED") {
  Launch l;
  auto gw = l.bus->serve<v1::ProviderEnvRequest, v1::ProviderEnvReply>(
      subjects::provider_env(l.id), "", [](const v1::ProviderEnvRequest&) -> v1::ProviderEnvReply {
        throw Error(Code::kNotFound, "no such sandbox");
      });
  l.bus->flush();
  Process sup = l.run("required", "echo agent-ran");
  auto code = sup.wait_for(60s);
  REQUIRE(code);
  CHECK(*code == 125);
  CHECK(l.output().find("agent-ran") == std::string::npos);
  REQUIRE(testing::wait_until(
      [&] {
        std::lock_guard lock(l.mu);
        return !l.reports.empty();
      },
      10s));
  std::lock_guard lock(l.mu);
  CHECK(l.reports.back().kind() == v1::REPORT_FAILED);
  CHECK(l.reports.back().reason().find("no such sandbox") != std::string::npos);
}

TEST_CASE("launch: --provider-env auto with no gateway at all runs the agent without") {
  Launch l;
  Process sup = l.run("auto", "echo token=[$GITHUB_TOKEN]");
  CHECK(sup.wait_for(60s) == 0);
  CHECK(l.output().find("token=[]") != std::string::npos);
}

namespace {
// GET http://127.0.0.1:PORT/PATH with the host's curl: "" when nothing answered.
std::string http_get(int port, const std::string& path) {
  auto p = Process::spawn({.argv = {"curl", "-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(port) + path},
                           .pipe_stdout = true});
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(p.stdout_fd(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  p.wait();
  return out;
}
}  // namespace

TEST_CASE("launch: --metrics-listen serves the supervisor's decisions, policy version and the agent's state") {
  testing::TempDir dir{"bulwark-sup-metrics"};
  int port = testing::free_port();
  // The default policy has no network: the proxy refuses the agent's request.
  Process sup = Process::spawn(
      {.argv = {std::string(BULWARK_BIN_DIR) + "/bulwark-supervisor", "--standalone", "--metrics-listen",
                "127.0.0.1:" + std::to_string(port), "--", "sh", "-c",
                "curl -s --max-time 5 http://example.com/ >/dev/null; echo fetched; sleep 5"},
       .output_file = dir.file("out.log")});
  REQUIRE_MESSAGE(testing::wait_until([&] { return slurp(dir.file("out.log")).find("fetched") != std::string::npos; }, 60s),
                  slurp(dir.file("out.log")));
  std::string page = http_get(port, "/metrics");
  CHECK_MESSAGE(page.find("bulwark_supervisor_decisions_total{layer=\"proxy\",decision=\"denied\"} 1\n") != std::string::npos, page);
  CHECK(page.find("bulwark_supervisor_agent_running 1\n") != std::string::npos);
  CHECK(page.find("bulwark_supervisor_policy_version 0\n") != std::string::npos);
  CHECK(page.find("service=\"supervisor\"") != std::string::npos);
  CHECK(http_get(port, "/readyz") == "ready\n");
  CHECK(sup.wait_for(30s) == 0);
}

TEST_CASE("launch: a bad --metrics-listen is a flag error") {
  Process sup = Process::spawn({.argv = {std::string(BULWARK_BIN_DIR) + "/bulwark-supervisor", "--standalone",
                                         "--metrics-listen", "nowhere", "--", "true"}});
  CHECK(sup.wait_for(30s) == 2);
}
