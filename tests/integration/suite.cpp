#include "tests/integration/suite.h"

#include <filesystem>

#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
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

ProcessResult run_process(const std::vector<std::string>& argv, const std::optional<std::vector<std::string>>& env) {
  auto p = Process::spawn({.argv = argv, .env = env, .pipe_stdout = true, .pipe_stderr = true});
  ProcessResult r;
  pollfd fds[2] = {{p.stdout_fd(), POLLIN, 0}, {p.stderr_fd(), POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  int live = 2;
  char buf[4096];
  while (live > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) into[i]->append(buf, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR) fds[i].fd = -1, --live;
    }
  }
  r.code = p.wait();
  return r;
}

std::vector<std::string> environment_without(const std::function<bool(const std::string&)>& drop) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (!drop(*e)) env.push_back(*e);
  return env;
}

std::string outside_ip() {
  std::string found;
  FILE* f = ::popen("ip -4 -o addr show scope global 2>/dev/null", "r");
  char line[512];
  while (f && std::fgets(line, sizeof line, f)) {
    char ifname[64], addr[64];
    if (std::sscanf(line, "%*d: %63s inet %63[0-9.]", ifname, addr) == 2 && std::string(ifname).rfind("bw", 0) != 0) {
      found = addr;
      break;
    }
  }
  if (f) ::pclose(f);
  if (found.empty()) throw Error(Code::kFailedPrecondition, "no global IPv4 address on this host for the transparent tests");
  return found;
}

TcpEcho::TcpEcho() {
  fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  socklen_t len = sizeof a;
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 16) != 0)
    throw Error(Code::kInternal, std::string("echo service: cannot listen on 0.0.0.0: ") + std::strerror(errno));
  ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] {
    for (;;) {
      int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      ++accepted_;
      char buf[4096];
      ssize_t n;
      while ((n = ::read(c, buf, sizeof buf)) > 0) (void)!::write(c, buf, static_cast<size_t>(n));
      ::close(c);
    }
  });
}

TcpEcho::~TcpEcho() {
  ::shutdown(fd_.get(), SHUT_RDWR);
  thread_.join();
}

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

namespace {
// SuiteOptions::secure_nats: the identities, the PKI and nats-server's operator-mode and TLS
// settings, made in the suite's directory by the tool scripts/up runs too.
std::string secure_nats_conf(const SuiteOptions& o, const TempDir& dir) {
  if (!o.secure_nats) return "";
  auto p = Process::spawn({.argv = {bin("bulwark-nats-auth"), "--dir", dir.file("nats-auth"), "--pki-dir", dir.file("pki")},
                           .output_file = dir.file("nats-auth.log")});
  if (p.wait() != 0) throw Error(Code::kInternal, "bulwark-nats-auth failed: " + read_file(dir.file("nats-auth.log")));
  return read_file(dir.file("nats-auth/nats-auth.conf"));
}
// The .creds file each service of the suite connects with.
std::string creds_name(const std::string& service) {
  return service == "driver-k8s" ? "driver-kubernetes" : service;
}
}  // namespace

Bus::Options Suite::bus_options(const std::string& name) const {
  Bus::Options b{nats_.url(), name};
  if (o_.secure_nats) {
    b.creds = nats_auth_dir() + "/admin.creds";
    b.ca_file = nats_ca();
  }
  return b;
}

Suite::Suite(SuiteOptions o) : o_(o), dir_("bulwark-suite"), nats_(secure_nats_conf(o_, dir_)) {
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
  auto bus = Bus::connect(bus_options("suite"));
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
  auto bus = Bus::connect(bus_options("suite"));
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
  if (o_.secure_nats) {
    argv.insert(argv.end(), {"--nats-creds", nats_auth_dir() + "/" + creds_name(name) + ".creds", "--nats-ca", nats_ca()});
    // The gateway mints each sandbox's own credentials with the account's key.
    if (name == "gateway-api") argv.insert(argv.end(), {"--nats-account-seed", nats_auth_dir() + "/account.seed"});
  }
  return Process::spawn({.argv = std::move(argv), .output_file = dir_.file(name + ".log")});
}

void Suite::start_gateway() {
  std::vector<std::string> argv = {bin("bulwark-gateway-api"), "--nats-url", nats_.url(), "--http-port",
                                   std::to_string(http_port_), "--db", dir_.file("gateway.db"), "--start-timeout", "30"};
  argv.insert(argv.end(), o_.gateway_args.begin(), o_.gateway_args.end());
  gateway_ = spawn("gateway-api", argv);
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
