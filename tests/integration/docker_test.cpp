// End to end on Docker: REST -> gateway-api -> NATS -> scheduler -> driver-docker -> a real
// dockerd (private, tests/support/dockerd.h) -> container on a bridge network -> supervisor ->
// back. The same contract as driver-podman's lifecycle_test.cpp, placed with driver_kind: docker.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/driver.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "services/driver-docker/container_spec.h"
#include "services/driver-docker/docker_client.h"
#include "shared/bus.h"
#include "shared/subjects.h"
#include "tests/integration/suite.h"
#include "tests/support/dockerd.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kImage = "localhost/bulwark/base:latest";
constexpr const char* kNetwork = "bulwark";

// One dockerd per test binary, started on first use, with the base image in it.
Dockerd& dockerd() {
  static Dockerd d;
  static bool imported = [] {
    auto t0 = std::chrono::steady_clock::now();
    d.import_busybox_image(kImage);
    MESSAGE("dockerd ready in " << d.startup_time().count() << " ms; base image imported in "
                                << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
                                << " ms");
    return true;
  }();
  (void)imported;
  return d;
}

docker::DockerClient client() { return docker::DockerClient(dockerd().socket()); }

bool tcp_open(const std::string& ip, int port) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// nats-server with JetStream on the docker network's gateway address: the host's services reach
// it there, and so do supervisors inside containers (a container's 127.0.0.1 is its own).
class BridgeNats {
 public:
  explicit BridgeNats(const std::string& ip) : dir_("bulwark-nats-docker"), port_(free_port()) {
    require_binary("nats-server", "nats-server");
    url_ = "nats://" + ip + ":" + std::to_string(port_);
    proc_ = Process::spawn({.argv = {"nats-server", "-a", ip, "-p", std::to_string(port_), "-js", "-sd", dir_.file("js")},
                            .output_file = dir_.file("nats.log")});
    if (!wait_until([&] { return tcp_open(ip, port_); }, 10s))
      throw Error(Code::kUnavailable, "nats-server did not start on " + ip + ": " + read_file(dir_.file("nats.log")));
  }
  const std::string& url() const { return url_; }

 private:
  TempDir dir_;
  int port_;
  std::string url_;
  Process proc_;
};

// The suite as real processes, with driver-docker as its only driver. Like Suite (suite.h), whose
// podman defaults stay as they are.
class DockerSuite {
 public:
  // network: the driver's --network (the managed bridge, or "host").
  explicit DockerSuite(std::string network = kNetwork)
      : network_(std::move(network)),
        dir_("bulwark-docker-suite"),
        gateway_ip_(client().ensure_network(kNetwork).gateway),
        nats_(gateway_ip_),
        http_port_(free_port()),
        driver_id_("docker-it-" + random_hex(4)) {
    bus_ = Bus::connect({nats_.url(), "docker-test"});
    // Every state report, as the gateway's consumer sees them (JetStream publishes reach core
    // subscribers too).
    reports_sub_ = bus_->subscribe("bulwark.sandbox.*.state", [this](Msg& m) {
      v1::StateReport r;
      if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu_);
      reports_.push_back(r);
    });
    start_gateway();
    policy_ = spawn("policy-service", {bin("bulwark-policy-service"), "--nats-url", nats_.url()});
    scheduler_ = spawn("scheduler", {bin("bulwark-scheduler"), "--nats-url", nats_.url()});
    start_driver();
    wait_ready();
  }
  ~DockerSuite() {
    driver_.stop();
    scheduler_.stop();
    policy_.stop();
    gateway_.stop();
    try {
      auto d = client();
      for (const auto& c : d.list_containers("io.bulwark.driver_id=" + driver_id_)) d.remove_container(c.value("Id", ""), 0);
    } catch (const std::exception&) {
    }
  }

  void start_gateway() {
    gateway_ = spawn("gateway-api", {bin("bulwark-gateway-api"), "--nats-url", nats_.url(), "--http-port",
                                     std::to_string(http_port_), "--db", dir_.file("gateway.db"), "--start-timeout", "30"});
    if (!wait_until([&] { return port_open(http_port_); }, 10s))
      throw Error(Code::kUnavailable, "gateway-api did not start:\n" + logs_of("gateway-api"));
    if (admin_token_.empty()) admin_token_ = read_admin_token(dir_.file("admin.token"));
  }
  void start_driver() {
    driver_ = spawn("driver-docker", {bin("bulwark-driver-docker"), "--nats-url", nats_.url(), "--docker-socket",
                                      dockerd().socket(), "--driver-id", driver_id_, "--network", network_, "--heartbeat",
                                      "0.2", "--poll", "0.2"});
  }
  void stop_driver(int sig) {
    driver_.signal(sig);
    driver_.wait();
  }
  // The scheduler and policy-service answer health, and the driver's heartbeats (kind docker)
  // arrive: the scheduler has then seen one.
  void wait_ready() {
    for (const std::string service : {"scheduler", "policy-service"}) {
      bool up = wait_until([&] {
        try {
          bus_->request<v1::HealthReply>(subjects::health(service), v1::HealthRequest(), 200ms);
          return true;
        } catch (const Error&) {
          return false;
        }
      }, 10s);
      if (!up) throw Error(Code::kUnavailable, service + " did not start:\n" + logs_of(service));
    }
    std::atomic<int> beats{0};
    auto sub = bus_->subscribe(subjects::kDriverHeartbeat, [&](Msg& m) {
      v1::DriverHeartbeat hb;
      if (hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) && hb.driver_id() == driver_id_ &&
          hb.kind() == "docker" && !hb.draining())
        ++beats;
    });
    if (!wait_until([&] { return beats >= 2; }, 20s))
      throw Error(Code::kUnavailable, "driver-docker sent no heartbeat:\n" + logs_of("driver-docker"));
  }

  httplib::Client http() const {
    httplib::Client c("http://127.0.0.1:" + std::to_string(http_port_));
    c.set_read_timeout(30);
    c.set_bearer_token_auth(admin_token_.c_str());
    return c;
  }
  json create(json spec) {
    spec["driver_kind"] = "docker";
    auto r = http().Post("/v1/sandboxes", spec.dump(), "application/json");
    if (!r || r->status != 202)
      throw Error(Code::kInternal, "create failed: " + (r ? std::to_string(r->status) + " " + r->body : "no reply"));
    return json::parse(r->body);
  }
  json get(const std::string& id) {
    auto r = http().Get("/v1/sandboxes/" + id);
    if (!r || r->status != 200)
      throw Error(Code::kInternal, "get failed: " + (r ? std::to_string(r->status) + " " + r->body : "no reply"));
    return json::parse(r->body);
  }
  json wait_phase(const std::string& id, const std::set<std::string>& phases, std::chrono::milliseconds timeout = 40s) {
    json last;
    bool ok = wait_until([&] {
      try {
        last = get(id);
      } catch (const Error&) {
        return false;
      }
      return phases.count(last.value("phase", "")) > 0;
    }, timeout);
    if (!ok)
      throw Error(Code::kTimeout, "sandbox " + id + " did not reach the expected phase; last record:\n" + last.dump(2) +
                                      "\n--- gateway-api ---\n" + logs_of("gateway-api") + "\n--- scheduler ---\n" +
                                      logs_of("scheduler") + "\n--- driver-docker ---\n" + logs_of("driver-docker") +
                                      "\n--- dockerd ---\n" + dockerd().log_tail());
    return last;
  }
  std::vector<std::string> log_lines(const std::string& id) {
    auto r = http().Get("/v1/sandboxes/" + id + "/logs");
    std::vector<std::string> out;
    if (!r || r->status != 200) return out;
    for (const auto& l : json::parse(r->body).value("lines", json::array())) out.push_back(l.value("line", ""));
    return out;
  }
  // The driver's reports for a sandbox, of one kind.
  std::vector<v1::StateReport> driver_reports(const std::string& id, v1::ReportKind kind) {
    std::lock_guard lock(mu_);
    std::vector<v1::StateReport> out;
    for (const auto& r : reports_)
      if (r.sandbox_id() == id && r.kind() == kind && r.source() == v1::SOURCE_DRIVER) out.push_back(r);
    return out;
  }
  template <class Reply>
  Reply driver_request(const std::string& op, const google::protobuf::Message& req) {
    return bus_->request<Reply>(subjects::driver_op(driver_id_, op), req, 5s);
  }
  std::string logs_of(const std::string& service) const {
    auto s = read_file(dir_.file(service + ".log"));
    return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
  }
  const std::string& driver_id() const { return driver_id_; }
  const std::string& gateway_ip() const { return gateway_ip_; }
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  Process spawn(const std::string& name, std::vector<std::string> argv) {
    return Process::spawn({.argv = std::move(argv), .output_file = dir_.file(name + ".log")});
  }
  std::string network_;
  TempDir dir_;
  std::string gateway_ip_;
  BridgeNats nats_;
  int http_port_;
  std::string driver_id_;
  std::string admin_token_;
  std::unique_ptr<Bus> bus_;
  std::mutex mu_;
  std::vector<v1::StateReport> reports_;
  Subscription reports_sub_;
  Process gateway_, policy_, scheduler_, driver_;
};

bool contains(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}
bool saw_phase(const json& s, const std::string& phase) {
  for (const auto& h : s["history"])
    if (h.value("phase", "") == phase) return true;
  return false;
}
bool container_exists(const std::string& sandbox_id) { return client().inspect_container("bulwark-" + sandbox_id).has_value(); }

}  // namespace

TEST_CASE("docker: a command runs in a real container; its output and the container's exit code reach the gateway") {
  auto t0 = std::chrono::steady_clock::now();
  DockerSuite suite;
  auto t_suite = std::chrono::steady_clock::now();
  auto hello = suite.create({{"name", "hello"}, {"command", {"echo", "hello-from-docker"}}});
  auto three = suite.create({{"name", "three"}, {"command", {"sh", "-c", "exit 3"}}});
  std::string hid = hello["sandbox_id"], tid = three["sandbox_id"];

  auto h = suite.wait_phase(hid, {"EXITED", "FAILED"});
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t_suite);
  REQUIRE_MESSAGE(h["phase"] == "EXITED", h.dump(2));
  CHECK(h["exit_code"] == 0);
  CHECK(saw_phase(h, "READY"));
  CHECK(h["supervisor_checked_in"] == true);
  CHECK(h["driver_id"] == suite.driver_id());
  CHECK(wait_until([&] { return contains(suite.log_lines(hid), "hello-from-docker"); }, 10s));
  // The supervisor prints the agent's lines too, so docker's own logs have them.
  CHECK(dockerd().container_logs("bulwark-" + hid).find("hello-from-docker") != std::string::npos);

  auto t = suite.wait_phase(tid, {"EXITED", "FAILED"});
  REQUIRE_MESSAGE(t["phase"] == "EXITED", t.dump(2));
  CHECK(t["exit_code"] == 3);
  // The driver reports the container's own exit code (the supervisor's, which is the agent's).
  REQUIRE(wait_until([&] { return !suite.driver_reports(tid, v1::REPORT_WORKLOAD_EXITED).empty(); }, 10s));
  CHECK(suite.driver_reports(tid, v1::REPORT_WORKLOAD_EXITED).front().exit_code() == 3);
  REQUIRE(wait_until([&] { return !suite.driver_reports(hid, v1::REPORT_WORKLOAD_EXITED).empty(); }, 10s));
  CHECK(suite.driver_reports(hid, v1::REPORT_WORKLOAD_EXITED).front().exit_code() == 0);
  CHECK(suite.driver_reports(tid, v1::REPORT_WORKLOAD_EXITED).size() == 1);  // once, not every poll

  // The driver's list and get agree.
  v1::DriverGetRequest g;
  g.set_sandbox_id(tid);
  auto st = suite.driver_request<v1::WorkloadStatus>("get", g);
  CHECK(st.exited());
  CHECK(st.exit_code() == 3);
  auto list = suite.driver_request<v1::DriverListReply>("list", v1::DriverListRequest());
  CHECK(list.workloads_size() == 2);
  for (const auto& w : list.workloads()) CHECK(w.exit_code() == (w.sandbox_id() == tid ? 3 : 0));
  MESSAGE("suite up in " << std::chrono::duration_cast<std::chrono::milliseconds>(t_suite - t0).count()
                         << " ms (dockerd included on first use); POST to EXITED: " << elapsed.count() << " ms");
}

TEST_CASE("docker: a long-running sandbox reaches READY in a container as specified, and DELETE removes it") {
  DockerSuite suite;
  auto t0 = std::chrono::steady_clock::now();
  auto s = suite.create({{"name", "long"}, {"command", {"sleep", "600"}}, {"labels", {{"team", "infra"}}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED"});
  auto to_ready = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  // READY = the supervisor checked in after building the agent's confinement inside docker.
  CHECK(s["supervisor_checked_in"] == true);
  CHECK(s["confinement"].value("landlock_abi", 0) >= 1);
  MESSAGE("POST to READY: " << to_ready.count() << " ms; confinement: " << s["confinement"].dump());

  auto c = client().inspect_container("bulwark-" + id);
  REQUIRE(c);
  const auto& hc = (*c)["HostConfig"];
  CHECK(hc["CapDrop"] == json({"ALL"}));
  CHECK(hc["CapAdd"] == json(docker::capabilities(kNetwork)));
  CHECK(hc["RestartPolicy"]["Name"] == "no");
  CHECK(hc["NetworkMode"] == kNetwork);
  CHECK(hc["PidsLimit"] == 4096);
  CHECK(hc["MaskedPaths"] == json::array());
  CHECK((*c)["Mounts"][0]["Destination"] == "/.bulwark");
  CHECK((*c)["Mounts"][0]["RW"] == false);
  CHECK((*c)["Config"]["Labels"]["io.bulwark.driver_id"] == suite.driver_id());
  CHECK((*c)["Config"]["Labels"]["io.bulwark.sandbox_id"] == id);
  CHECK((*c)["Config"]["Labels"]["io.bulwark.label.team"] == "infra");
  CHECK((*c)["State"]["Running"] == true);

  auto t1 = std::chrono::steady_clock::now();
  auto r = suite.http().Delete("/v1/sandboxes/" + id);
  REQUIRE(r);
  CHECK(r->status == 202);
  suite.wait_phase(id, {"DELETED"});
  auto to_deleted = std::chrono::steady_clock::now() - t1;
  MESSAGE("DELETE to DELETED: " << std::chrono::duration_cast<std::chrono::milliseconds>(to_deleted).count() << " ms");
  CHECK_FALSE(container_exists(id));
  // Stopped gracefully: the supervisor passed SIGTERM on to the agent (CAP_KILL) well before
  // docker's 5 s SIGKILL.
  CHECK(to_deleted < 4s);
}

TEST_CASE("docker: a restarted driver adopts its live sandbox and removes the one deleted while it was away") {
  DockerSuite suite;
  auto keep = suite.create({{"name", "keep"}, {"command", {"sleep", "600"}}});
  auto gone = suite.create({{"name", "gone"}, {"command", {"sleep", "600"}}});
  std::string kid = keep["sandbox_id"], gid = gone["sandbox_id"];
  suite.wait_phase(kid, {"READY"});
  suite.wait_phase(gid, {"READY"});
  std::string workload = suite.get(kid)["workload_id"];
  suite.stop_driver(SIGKILL);
  auto r = suite.http().Delete("/v1/sandboxes/gone");
  REQUIRE(r);
  auto g = suite.wait_phase(gid, {"DELETED"});
  CHECK(g["reason"].get<std::string>().find("unreachable") != std::string::npos);
  CHECK(container_exists(gid));  // nobody could remove it yet

  suite.start_driver();
  suite.wait_ready();
  // It reports what it found (running), the gateway tells it to remove the deleted one's.
  CHECK(wait_until([&] { return !container_exists(gid); }, 15s));
  CHECK(container_exists(kid));
  std::this_thread::sleep_for(1s);  // several polls: the adopted one stays READY
  auto k = suite.get(kid);
  CHECK(k["phase"] == "READY");
  CHECK(k["workload_id"] == workload);
  v1::DriverGetRequest req;
  req.set_sandbox_id(kid);
  CHECK(suite.driver_request<v1::WorkloadStatus>("get", req).running());
  // And it places new work.
  auto more = suite.create({{"name", "after-restart"}, {"command", {"echo", "again"}}});
  CHECK(suite.wait_phase(more["sandbox_id"], {"EXITED", "FAILED"})["phase"] == "EXITED");
}

TEST_CASE("docker: a container removed behind the driver's back is reported gone") {
  DockerSuite suite;
  auto s = suite.create({{"name", "victim"}, {"command", {"sleep", "600"}}});
  std::string id = s["sandbox_id"];
  suite.wait_phase(id, {"READY"});
  REQUIRE(dockerd().force_remove("bulwark-" + id));  // docker rm -f: no stop, no chance to report
  s = suite.wait_phase(id, {"FAILED"}, 15s);
  CHECK_MESSAGE(s["reason"].get<std::string>().find("disappeared from driver " + suite.driver_id()) != std::string::npos, s["reason"]);
  CHECK_MESSAGE(s["reason"].get<std::string>().find("removed outside Bulwark") != std::string::npos, s["reason"]);
  CHECK(suite.driver_reports(id, v1::REPORT_WORKLOAD_GONE).size() == 1);
}

TEST_CASE("docker: an image dockerd does not have fails the sandbox saying how to import it") {
  DockerSuite suite;
  auto s = suite.create({{"name", "noimage"}, {"image", "localhost/bulwark/not-imported:1"}, {"command", {"true"}}});
  s = suite.wait_phase(s["sandbox_id"], {"FAILED", "READY", "EXITED"});
  CHECK(s["phase"] == "FAILED");
  CHECK_MESSAGE(s["reason"].get<std::string>().find("not in dockerd's local store") != std::string::npos, s["reason"]);
  CHECK_MESSAGE(s["reason"].get<std::string>().find("import it with") != std::string::npos, s["reason"]);
}

TEST_CASE("docker: the driver refuses to start, saying why, without dockerd or with a NATS its sandboxes cannot reach") {
  TempDir dir("bulwark-docker-start");
  NatsServer loopback_nats;  // 127.0.0.1 only: a container's 127.0.0.1 is its own
  auto run = [&](const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {bin("bulwark-driver-docker"), "--nats-url", loopback_nats.url(), "--driver-id", "docker-start"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    std::string log = dir.file("driver-" + random_hex(2) + ".log");
    auto p = Process::spawn({.argv = argv, .output_file = log});
    auto code = p.wait_for(20s);
    if (!code) p.stop();
    return std::make_pair(code.value_or(-1), read_file(log));
  };
  auto [code, out] = run({"--docker-socket", dir.file("missing.sock")});
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("no Docker socket at " + dir.file("missing.sock")) != std::string::npos, out);
  CHECK_MESSAGE(out.find("start dockerd") != std::string::npos, out);

  std::tie(code, out) = run({"--docker-socket", dockerd().socket(), "--network", kNetwork});
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("nothing answers there") != std::string::npos, out);
  CHECK_MESSAGE(out.find("--sandbox-nats-url") != std::string::npos, out);
}

namespace {

// A TCP echo service on one address (one client at a time is enough here).
class EchoServer {
 public:
  explicit EchoServer(const std::string& ip) {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    socklen_t len = sizeof a;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 16) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw Error(Code::kInternal, errno_text("echo server on " + ip, errno));
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        ++accepted;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(c, buf, sizeof buf)) > 0) (void)!::write(c, buf, static_cast<size_t>(n));
        ::close(c);
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  int port() const { return port_; }
  std::atomic<int> accepted{0};

 private:
  Fd fd_;
  int port_ = 0;
  std::thread thread_;
};

struct Probe {
  std::string name;
  std::vector<std::string> args;
  std::string log;  // what the supervisor logs for it; "" when the kernel's own checks refuse it
  bool positive = false;
};

// The attempts of the attack suite (tests/integration/escape/) that depend on what the container
// is given: the capabilities the supervisor keeps must not reach the agent, and must be enough
// for every layer (namespaces, identity, seccomp listener, firewall, the proxy's /proc reads).
void run_probes(const std::string& network, bool landlock_logged) {
  std::string probe = bin("bulwark-escape-probe");
  dockerd().import_busybox_image("localhost/bulwark/escape:docker",
                                 "mkdir -p $r/probe; cp " + probe + " $r/probe/bulwark-escape-probe; "
                                 "echo read-only > $r/probe/owned; chown 1000:1000 $r/probe/owned; chmod 1777 $r/sandbox");
  DockerSuite suite(network);
  const std::string gw = suite.gateway_ip();
  EchoServer allowed(gw), other(gw);
  std::string policy = "version: 1\n"
                       "filesystem_policy:\n"
                       "  read_only: [/bin, /etc, /proc, /dev/urandom, /probe]\n"
                       "  read_write: [/tmp, /dev/null, /sandbox]\n"
                       "network_policies:\n"
                       "  echo:\n"
                       "    endpoints:\n"
                       "      - { host: " + gw + ", port: " + std::to_string(allowed.port()) + " }\n"
                       "    binaries:\n"
                       "      - { path: /probe/bulwark-escape-probe }\n";
  std::vector<Probe> probes = {
      {"write-outside", {}, landlock_logged ? "denied: landlock " : ""},
      {"write-read-only-file", {"/probe/owned"}, landlock_logged ? "denied: landlock " : ""},
      {"capabilities", {}},
      {"kill-supervisor", {std::to_string(::getpid())}},
      {"proc-environ", {}},
      {"ptrace-sibling", {}, "denied: seccomp ptrace"},
      {"setuid-root", {}, "denied: seccomp setuid to root"},
      {"mount-tmpfs", {"/sandbox"}, "denied: seccomp mount"},
      {"unshare-netns", {}, "denied: seccomp unshare(flags 0x40000000)"},
      {"raw-socket", {}, "denied: seccomp socket(AF_INET, type 3"},
      {"fork-bomb", {}},
      {"direct-connect", {gw, std::to_string(other.port())}, "denied: proxy transparent CONNECT " + gw},
      {"proxy-denies-host", {"evil.example:443"}, "denied: proxy CONNECT evil.example:443"},
      {"ok-write-workdir", {"/sandbox"}, "", true},
      {"ok-read-etc", {}, "", true},
      {"ok-fork-thread", {}, "", true},
      {"ok-proxy-allowed", {gw + ":" + std::to_string(allowed.port())}, "", true},
  };
  for (const auto& p : probes) {
    CAPTURE(network);
    CAPTURE(p.name);
    json command = json::array({"/probe/bulwark-escape-probe", p.name});
    for (const auto& a : p.args) command.push_back(a);
    auto s = suite.create({{"image", "localhost/bulwark/escape:docker"}, {"command", command}, {"policy", policy}});
    std::string id = s["sandbox_id"];
    s = suite.wait_phase(id, {"EXITED", "FAILED"}, 60s);
    std::string out;
    wait_until([&] {
      out.clear();
      for (const auto& l : suite.log_lines(id)) out += l + "\n";
      return out.find(p.name) != std::string::npos && (p.log.empty() || out.find(p.log) != std::string::npos);
    }, 10s);
    CAPTURE(out);
    CHECK(s.value("exit_code", -1) == 0);
    // Whether Landlock's denials are logged, the sandbox record says so.
    std::string notes = s["confinement"].value("notes", json::array()).dump();
    CHECK((notes.find("Landlock denials are not logged") == std::string::npos) == landlock_logged);
    CHECK(out.find((p.positive ? "OK " : "DENIED ") + p.name) != std::string::npos);
    CHECK(out.find("ESCAPE") == std::string::npos);
    if (!p.log.empty()) CHECK(out.find(p.log) != std::string::npos);
    suite.http().Delete("/v1/sandboxes/" + id);
  }
  CHECK(other.accepted == 0);  // nothing got past the agent's firewall
  CHECK(allowed.accepted >= 1);
}

}  // namespace

// On a bridge the kernel's audit records (Landlock's only channel) do not reach the supervisor:
// the sandbox's confinement notes say so (docs/drivers.md).
TEST_CASE("docker, bridge network: the capability-dependent attacks are denied, the allowed paths work") {
  run_probes(kNetwork, /*landlock_logged=*/false);
}

TEST_CASE("docker, host network: the same, and Landlock's denials are logged") {
  run_probes("host", /*landlock_logged=*/true);
}
