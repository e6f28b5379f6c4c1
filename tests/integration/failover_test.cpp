// Failover on one machine: every stateless service runs replicated (3 schedulers, 2
// policy-services, 2 privacy-routers, 2 driver-podman with their own driver ids; NATS queue groups
// share the work), sandboxes are created at a steady rate while one replica of each service in
// turn is SIGKILLed, and then: every accepted create reached READY or a FAILED that says why, no
// sandbox was lost or ran twice (one container per sandbox), and a policy update still reaches a
// supervisor and is acknowledged.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/driver.pb.h"
#include "services/driver-podman/podman_client.h"
#include "shared/bus.h"
#include "shared/subjects.h"
#include "tests/integration/policies.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Replica {
  std::string name;  // log file name, e.g. scheduler-1
  Process proc;
};

class Cluster {
 public:
  Cluster() : dir_("bulwark-failover") {
    podman_socket();
    http_port_ = free_port();
    url_ = "http://127.0.0.1:" + std::to_string(http_port_);
    std::string suffix = random_hex(3);
    driver_ids_ = {"podman-fo-a" + suffix, "podman-fo-b" + suffix};
    // No rate limit: the test polls every sandbox from one address.
    spawn("gateway-api", {bin("bulwark-gateway-api"), "--nats-url", nats_.url(), "--http-port", std::to_string(http_port_), "--db",
                          dir_.file("gateway.db"), "--start-timeout", "30", "--rate-limit", "0"});
    for (int i = 1; i <= 3; ++i) spawn("scheduler-" + std::to_string(i), {bin("bulwark-scheduler"), "--nats-url", nats_.url()});
    for (int i = 1; i <= 2; ++i) {
      spawn("policy-service-" + std::to_string(i), {bin("bulwark-policy-service"), "--nats-url", nats_.url()});
      spawn("privacy-router-" + std::to_string(i), {bin("bulwark-privacy-router"), "--nats-url", nats_.url()});
    }
    for (int i = 0; i < 2; ++i)
      spawn("driver-podman-" + std::to_string(i + 1),
            {bin("bulwark-driver-podman"), "--nats-url", nats_.url(), "--podman-socket", podman_socket(), "--driver-id",
             driver_ids_[i], "--heartbeat", "0.2", "--poll", "0.2", "--capacity", "64"});
    if (!wait_until([&] { return port_open(http_port_); }, 10s))
      throw Error(Code::kUnavailable, "gateway-api did not start:\n" + logs());
    token_ = read_admin_token(dir_.file("admin.token"));
    wait_all_healthy();
  }
  ~Cluster() {
    for (auto& r : replicas_) r.proc.stop(1000ms);
    try {
      podman::PodmanClient client(podman_socket());
      for (const auto& id : driver_ids_)
        for (const auto& c : client.list_containers("io.bulwark.driver_id=" + id)) client.remove_container(c.value("Id", ""));
    } catch (const std::exception&) {
    }
  }

  // Every replica answers health: the health subject has no queue group, so each one replies and
  // the replies are counted by instance_id; both drivers heartbeat.
  void wait_all_healthy() {
    auto bus = Bus::connect({nats_.url(), "failover-test"});
    std::map<std::string, size_t> want = {{"scheduler", 3}, {"policy-service", 2}, {"privacy-router", 2}, {"driver-podman", 2}};
    for (const auto& [service, n] : want) {
      std::set<std::string> seen;
      std::string inbox = "_INBOX.failover." + random_hex(6);
      auto sub = bus->subscribe(inbox, [&](Msg& m) {
        v1::HealthReply r;
        if (r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) {
          std::lock_guard lock(mu_);
          seen.insert(r.instance_id());
        }
      });
      bool ok = wait_until([&] {
        bus->publish(subjects::health(service), inbox, v1::HealthRequest().SerializeAsString());
        std::this_thread::sleep_for(100ms);
        std::lock_guard lock(mu_);
        return seen.size() >= n;
      }, 15s);
      if (!ok) throw Error(Code::kUnavailable, service + ": " + std::to_string(seen.size()) + " of " + std::to_string(n) +
                                                   " replicas answer health:\n" + logs());
    }
    std::set<std::string> beating;
    auto sub = bus->subscribe(subjects::kDriverHeartbeat, [&](Msg& m) {
      v1::DriverHeartbeat hb;
      std::lock_guard lock(mu_);
      if (hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) beating.insert(hb.driver_id());
    });
    if (!wait_until([&] {
          std::lock_guard lock(mu_);
          return beating.size() >= 2;
        }, 10s))
      throw Error(Code::kUnavailable, "the drivers send no heartbeat:\n" + logs());
    std::this_thread::sleep_for(500ms);  // the schedulers have seen both drivers
  }

  // SIGKILL the first live replica whose name starts with `service`; returns its name.
  std::string kill_one(const std::string& service) {
    for (auto& r : replicas_)
      if (r.name.rfind(service + "-", 0) == 0 && r.proc.running()) {
        r.proc.signal(SIGKILL);
        r.proc.wait();
        return r.name;
      }
    throw Error(Code::kInternal, "no live replica of " + service);
  }

  httplib::Client client() const {
    httplib::Client c(url_);
    c.set_tcp_nodelay(true);
    c.set_read_timeout(30);
    c.set_bearer_token_auth(token_.c_str());
    return c;
  }
  std::string logs() const {
    std::string all;
    for (const auto& r : replicas_) {
      auto s = read_file(dir_.file(r.name + ".log"));
      all += "--- " + r.name + " ---\n" + (s.size() > 1500 ? s.substr(s.size() - 1500) : s);
    }
    return all;
  }
  const std::vector<std::string>& driver_ids() const { return driver_ids_; }

 private:
  void spawn(const std::string& name, std::vector<std::string> argv) {
    replicas_.push_back({name, Process::spawn({.argv = std::move(argv), .output_file = dir_.file(name + ".log")})});
  }
  TempDir dir_;
  NatsServer nats_;
  int http_port_ = 0;
  std::string url_, token_;
  std::vector<std::string> driver_ids_;
  std::vector<Replica> replicas_;
  std::mutex mu_;
};

}  // namespace

TEST_CASE("creates keep working while one replica of each service is SIGKILLed in turn") {
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count(); };
  Cluster cluster;
  auto c = cluster.client();
  MESSAGE("cluster up in " << since() << " ms");

  // 36 creates, one every 250 ms (9 s); a kill every 2 s from the 1.5 s mark.
  const std::vector<std::string> kill_order = {"scheduler", "policy-service", "privacy-router", "driver-podman"};
  std::vector<std::string> accepted;
  std::vector<std::string> refused;  // status and body of every create not accepted
  std::vector<std::string> killed;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 36; ++i) {
    std::this_thread::sleep_until(start + i * 250ms);
    auto elapsed = std::chrono::steady_clock::now() - start;
    size_t due = elapsed < 1500ms ? 0 : std::min<size_t>(kill_order.size(), 1 + (elapsed - 1500ms) / 2000ms);
    while (killed.size() < due) killed.push_back(cluster.kill_one(kill_order[killed.size()]));
    json spec = {{"name", "fo-" + std::to_string(i)}, {"policy", kGoodPolicy}};  // the image's default: sleep
    auto r = c.Post("/v1/sandboxes", spec.dump(), "application/json");
    if (r && r->status == 202) accepted.push_back(json::parse(r->body)["sandbox_id"]);
    else refused.push_back(r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error()));
  }
  MESSAGE("killed " << killed.size() << " replicas; " << accepted.size() << " creates accepted, " << refused.size()
                    << " refused, by " << since() << " ms");
  CHECK(killed.size() == kill_order.size());
  for (const auto& why : refused) {
    // A refusal must say why, in the REST error shape.
    auto j = json::parse(why.substr(why.find(' ') + 1), nullptr, false);
    CHECK_MESSAGE((!j.is_discarded() && j.contains("error")), why);
  }
  CHECK_MESSAGE(accepted.size() >= 30, "most creates must be accepted while replicas die");

  // Every accepted create settles: READY, or FAILED with a reason.
  std::map<std::string, json> final_state;
  std::map<std::string, int> by_phase;
  bool settled = wait_until([&] {
    for (const auto& id : accepted) {
      if (final_state.count(id)) continue;
      auto r = c.Get("/v1/sandboxes/" + id);
      if (!r || r->status != 200) continue;
      auto s = json::parse(r->body);
      std::string phase = s.value("phase", "");
      if (phase == "READY" || phase == "FAILED") final_state[id] = s;
    }
    return final_state.size() == accepted.size();
  }, 45s);
  std::map<std::string, int> by_driver;
  for (const auto& [id, s] : final_state) ++by_phase[s.value("phase", "")], ++by_driver[s.value("driver_id", "")];
  for (const auto& [driver, n] : by_driver) MESSAGE("driver " << (driver.empty() ? "(none)" : driver) << ": " << n << " sandboxes");
  // Both drivers took work: placement spread the creates, and the survivor took over.
  CHECK(by_driver[cluster.driver_ids()[0]] > 0);
  CHECK(by_driver[cluster.driver_ids()[1]] > 0);
  std::string unsettled;
  for (const auto& id : accepted)
    if (!final_state.count(id)) {
      auto r = c.Get("/v1/sandboxes/" + id);
      unsettled += (r ? r->body : std::string("no reply")) + "\n";
    }
  MESSAGE("settled by " << since() << " ms: READY " << by_phase["READY"] << ", FAILED " << by_phase["FAILED"]);
  CHECK_MESSAGE(settled, "sandboxes that never settled:\n" << unsettled << cluster.logs());
  for (const auto& [id, s] : final_state)
    if (s.value("phase", "") == "FAILED") {
      MESSAGE("FAILED " << id << ": " << s.value("reason", ""));
      CHECK_MESSAGE(!s.value("reason", "").empty(), s.dump());
    }
  CHECK_MESSAGE(by_phase["READY"] >= static_cast<int>(accepted.size()) / 2, "most sandboxes must run");

  // None lost or duplicated: the gateway lists each accepted sandbox once, and podman holds at
  // most one container per sandbox (exactly one for each READY one).
  auto list = json::parse(c.Get("/v1/sandboxes?limit=1000")->body)["sandboxes"];
  std::map<std::string, int> listed;
  for (const auto& s : list) ++listed[s.value("sandbox_id", "")];
  for (const auto& id : accepted) CHECK_MESSAGE(listed[id] == 1, id << " listed " << listed[id] << " times");
  CHECK(list.size() == accepted.size());
  podman::PodmanClient podman(podman_socket());
  std::map<std::string, int> containers;
  for (const auto& driver : cluster.driver_ids())
    for (const auto& ct : podman.list_containers("io.bulwark.driver_id=" + driver))
      ++containers[ct["Labels"].value("io.bulwark.sandbox_id", "")];
  for (const auto& [id, s] : final_state) {
    if (s.value("phase", "") == "READY") CHECK_MESSAGE(containers[id] == 1, id << " has " << containers[id] << " containers");
    else CHECK_MESSAGE(containers[id] <= 1, id << " has " << containers[id] << " containers");
  }

  // After the kills, a policy update still reaches a supervisor (through the surviving
  // policy-service) and is acknowledged.
  std::string target;
  for (const auto& [id, s] : final_state)
    if (s.value("phase", "") == "READY" && s.value("driver_id", "") == cluster.driver_ids()[1]) target = id;
  REQUIRE_MESSAGE(!target.empty(), "no READY sandbox on the surviving driver");
  std::string v2 = kGoodPolicy + "network_policies:\n  web:\n    endpoints:\n      - { host: example.com, port: 443 }\n"
                                 "    binaries:\n      - { path: /bin/busybox }\n";
  auto put = c.Put("/v1/sandboxes/" + target + "/policy", json{{"yaml", v2}, {"wait_ms", 20000}, {"reason", "failover"}}.dump(),
                   "application/json");
  REQUIRE(put);
  CHECK_MESSAGE(put->status == 200, put->body);
  CHECK_MESSAGE(json::parse(put->body).value("acknowledged", false), put->body);
  MESSAGE("failover test done in " << since() << " ms");
}
