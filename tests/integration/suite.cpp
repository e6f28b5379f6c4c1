#include "tests/integration/suite.h"

#include <filesystem>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

#include "services/driver-podman/podman_client.h"
#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/driver.pb.h"
#include "shared/bus.h"
#include "shared/error.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::testing {

std::string bin(const std::string& name) { return std::string(BULWARK_BIN_DIR) + "/" + name; }
std::string source_dir() { return BULWARK_SOURCE_DIR; }

std::string read_admin_token(const std::string& path) {
  std::string t = read_file(path);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  if (t.rfind("bwk_", 0) != 0) throw Error(Code::kInternal, "no admin token in " + path + " (the gateway writes it on first start)");
  return t;
}

namespace {
struct PodmanService {
  TempDir dir{"bulwark-podman"};
  std::string socket = dir.file("podman.sock");
  Process proc;
  PodmanService() {
    require_binary("podman", "podman");
    require_binary("runc", "runc");
    std::string conf = source_dir() + "/deploy/podman/containers.conf";
    setenv("CONTAINERS_CONF", conf.c_str(), 1);
    std::string build = source_dir() + "/scripts/build-base-image";
    if (std::system(build.c_str()) != 0)
      throw Error(Code::kFailedPrecondition, "scripts/build-base-image failed: run scripts/install-deps");
    proc = Process::spawn({.argv = {"podman", "system", "service", "--time=0", "unix://" + socket},
                           .output_file = dir.file("podman.log")});
    podman::PodmanClient client(socket);
    if (!wait_until([&] {
          try {
            client.ping();
            return true;
          } catch (const Error&) {
            return false;
          }
        }, std::chrono::seconds(20)))
      throw Error(Code::kUnavailable, "podman system service did not answer: " + read_file(dir.file("podman.log")));
  }
};
}  // namespace

const std::string& podman_socket() {
  static PodmanService service;  // lives until the test binary exits
  return service.socket;
}

VmReaper::~VmReaper() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(sandboxes, ec)) {
    try {
      int pid = std::stoi(read_file((e.path() / "qemu.pid").string()));
      if (read_file("/proc/" + std::to_string(pid) + "/cmdline").find(e.path().string()) != std::string::npos)
        ::kill(pid, SIGKILL);
    } catch (const std::exception&) {
      // no pidfile, or the VM is gone already: nothing to kill
    }
  }
}

Suite::Suite(SuiteOptions o) : o_(o), dir_("bulwark-suite") {
  podman_socket();
  http_port_ = free_port();
  gateway_url_ = "http://127.0.0.1:" + std::to_string(http_port_);
  driver_id_ = o_.driver.substr(o_.driver.find('-') + 1) + "-it-" + random_hex(4);
  start_gateway();
  policy_service_ = spawn("policy-service", {bin("bulwark-policy-service"), "--nats-url", nats_.url()});
  start_scheduler();
  start_driver();
  wait_ready();
}

void Suite::wait_ready() {
  // Ready when the scheduler answers health (it does once subscribed) and the driver has sent two
  // heartbeats since: the scheduler has then seen at least one of them.
  auto bus = Bus::connect({nats_.url(), "suite"});
  std::atomic<int> beats{0};
  // A service is up once it answers health (it does once subscribed).
  auto wait_health = [&](const std::string& service) {
    bool up = wait_until([&] {
      try {
        bus->request<v1::HealthReply>(subjects::health(service), v1::HealthRequest(), std::chrono::milliseconds(200));
        return true;
      } catch (const Error&) {
        return false;
      }
    }, std::chrono::seconds(10));
    if (!up) throw Error(Code::kUnavailable, service + " did not start:\n" + logs_of(service));
  };
  wait_health("scheduler");
  wait_health("policy-service");
  auto sub = bus->subscribe(subjects::kDriverHeartbeat, [&](Msg& m) {
    v1::DriverHeartbeat hb;
    if (hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) && hb.driver_id() == driver_id_) ++beats;
  });
  // driver-vm probes KVM with a short boot before its first heartbeat.
  if (!wait_until([&] { return beats >= 2; }, std::chrono::seconds(60)))
    throw Error(Code::kUnavailable, o_.driver + " sent no heartbeat:\n" + logs_of(o_.driver));
}

void Suite::start_router(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {bin("bulwark-privacy-router"), "--nats-url", nats_.url()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  router_ = spawn("privacy-router", argv);
  auto bus = Bus::connect({nats_.url(), "suite"});
  bool up = wait_until([&] {
    try {
      bus->request<v1::HealthReply>(subjects::health("privacy-router"), v1::HealthRequest(), std::chrono::milliseconds(200));
      return true;
    } catch (const Error&) {
      return false;
    }
  }, std::chrono::seconds(10));
  if (!up) throw Error(Code::kUnavailable, "privacy-router did not start:\n" + logs_of("privacy-router"));
}

Suite::~Suite() {
  router_.stop();
  driver_.stop();
  scheduler_.stop();
  policy_service_.stop();
  gateway_.stop();
  // Leave nothing behind in podman, whatever the test did.
  try {
    podman::PodmanClient client(podman_socket());
    for (const auto& c : client.list_containers("io.bulwark.driver_id=" + driver_id_)) client.remove_container(c.value("Id", ""));
  } catch (const std::exception&) {
  }
}

int Suite::metrics_port(const std::string& service) const {
  auto it = metrics_ports_.find(service);
  if (it == metrics_ports_.end())
    throw Error(Code::kNotFound, service + " serves no metrics here (construct the Suite with SuiteOptions{.metrics = true})");
  return it->second;
}

Process Suite::spawn(const std::string& name, std::vector<std::string> argv) {
  if (o_.metrics) {
    auto [it, fresh] = metrics_ports_.try_emplace(name, 0);
    while (fresh && (it->second == 0 || it->second == http_port_ || it->second == http_port_ + 1 ||
                     std::count_if(metrics_ports_.begin(), metrics_ports_.end(), [&](const auto& e) { return e.second == it->second; }) > 1))
      it->second = free_port();
    argv.insert(argv.end(), {"--metrics-listen", "127.0.0.1:" + std::to_string(it->second)});
  }
  return Process::spawn({.argv = std::move(argv), .output_file = dir_.file(name + ".log")});
}

void Suite::start_gateway() {
  gateway_ = spawn("gateway-api", {bin("bulwark-gateway-api"), "--nats-url", nats_.url(), "--http-port",
                                   std::to_string(http_port_), "--db", dir_.file("gateway.db"), "--start-timeout", "30"});
  if (!wait_until([&] { return port_open(http_port_); }, std::chrono::seconds(10)))
    throw Error(Code::kUnavailable, "gateway-api did not start:\n" + logs_of("gateway-api"));
  // Written before the gateway listens; kept across restarts (tokens live in gateway.db).
  if (admin_token_.empty()) {
    admin_token_ = read_admin_token(dir_.file("admin.token"));
    ::setenv("BULWARK_TOKEN", admin_token_.c_str(), 1);  // for the bulwark CLI the tests run
  }
}
void Suite::stop_gateway(int sig) {
  gateway_.signal(sig);
  gateway_.wait();
}
void Suite::start_scheduler() { scheduler_ = spawn("scheduler", {bin("bulwark-scheduler"), "--nats-url", nats_.url()}); }
void Suite::start_driver() {
  std::vector<std::string> argv = {bin("bulwark-" + o_.driver), "--nats-url", nats_.url(), "--driver-id", driver_id_,
                                   "--heartbeat", "0.2", "--poll", "0.2"};
  if (o_.driver == "driver-podman") argv.insert(argv.end(), {"--podman-socket", podman_socket()});
  argv.insert(argv.end(), o_.driver_args.begin(), o_.driver_args.end());
  driver_ = spawn(o_.driver, argv);
}
void Suite::stop_driver(int sig) {
  driver_.signal(sig);
  driver_.wait();
}

httplib::Client Suite::client() const {
  httplib::Client c(gateway_url_);
  c.set_read_timeout(30);
  c.set_bearer_token_auth(admin_token_.c_str());
  return c;
}

nlohmann::json Suite::create(const nlohmann::json& spec) {
  auto r = client().Post("/v1/sandboxes", spec.dump(), "application/json");
  if (!r || r->status != 202)
    throw Error(Code::kInternal, "create failed: " + (r ? std::to_string(r->status) + " " + r->body : "no reply"));
  return nlohmann::json::parse(r->body);
}

nlohmann::json Suite::get(const std::string& id) {
  auto r = client().Get("/v1/sandboxes/" + id);
  if (!r || r->status != 200)
    throw Error(Code::kInternal, "get failed: " + (r ? std::to_string(r->status) + " " + r->body : "no reply"));
  return nlohmann::json::parse(r->body);
}

nlohmann::json Suite::wait_phase(const std::string& id, const std::set<std::string>& phases,
                                 std::chrono::milliseconds timeout) {
  nlohmann::json last;
  bool ok = wait_until([&] {
    try {
      last = get(id);
    } catch (const Error&) {
      return false;  // the gateway may be restarting
    }
    return phases.count(last.value("phase", "")) > 0;
  }, timeout);
  if (!ok)
    throw Error(Code::kTimeout, "sandbox " + id + " did not reach the expected phase; last record:\n" + last.dump(2) +
                                    "\n--- gateway-api ---\n" + logs_of("gateway-api") + "\n--- scheduler ---\n" +
                                    logs_of("scheduler") + "\n--- " + o_.driver + " ---\n" + logs_of(o_.driver) +
                                    "\n--- policy-service ---\n" + logs_of("policy-service"));
  return last;
}

std::string Suite::logs_of(const std::string& service) const {
  auto s = read_file(dir_.file(service + ".log"));
  return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
}

}  // namespace bulwark::testing
