#pragma once
// The whole suite as real processes for end-to-end tests: nats-server with JetStream, a podman API
// service, gateway-api, scheduler and driver-podman on free ports, each logging to its own file.
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <functional>
#include <atomic>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shared/bus.h"
#include "shared/process.h"
#include "tests/support/support.h"

namespace bulwark::testing {

// Whether `part` occurs in `s` (output, logs, bodies).
inline bool has(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

std::string bin(const std::string& name);  // path of a built executable
std::string source_dir();
// The first line of an admin.token file a gateway wrote; Error when it holds no token.
std::string read_admin_token(const std::string& path);

// A finished process: its exit code (Process::wait()) and everything it wrote.
struct ProcessResult {
  int code = 0;
  std::string out, err;
};
// Runs argv to its end, reading stdout and stderr together so neither pipe fills up while the other
// is read. env: the whole environment ("K=V"); nullopt inherits this process's.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::optional<std::vector<std::string>>& env = std::nullopt);
// This process's environment without the entries `drop` is true for.
std::vector<std::string> environment_without(const std::function<bool(const std::string&)>& drop);

// This host's first global IPv4 address on an interface that is not a sandbox's veth ("bw*"): what
// an agent reaches through its veth and the proxy then dials. Error when there is none.
std::string outside_ip();

// A TCP echo service on 0.0.0.0 (a stand-in for Redis or Postgres: protocol: tcp), echoing each
// connection's bytes and counting connections.
class TcpEcho {
 public:
  TcpEcho();
  ~TcpEcho();
  TcpEcho(const TcpEcho&) = delete;
  TcpEcho& operator=(const TcpEcho&) = delete;
  int port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  Fd fd_;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// One podman API service per test binary (started on first use), on a private socket, with the
// project's containers.conf; the base image is built if missing.
const std::string& podman_socket();

// driver-vm daemonizes QEMU, which outlives the driver: kills, when destroyed, every QEMU whose
// pidfile lies under `sandboxes` (<state-dir>/sandboxes), so a failed test leaves no VM running.
struct VmReaper {
  std::string sandboxes;
  ~VmReaper();
};

struct SuiteOptions {
  // Each service started also serves --metrics-listen 127.0.0.1:<free port> (metrics_port()).
  bool metrics = false;
  // The compute driver to run instead of driver-podman ("driver-docker", "driver-vm",
  // "driver-k8s") and its flags; the suite adds --nats-url, --driver-id, --heartbeat and --poll.
  std::string driver = "driver-podman";
  std::vector<std::string> driver_args;
  // Extra flags for gateway-api (e.g. --tls auto); the suite still waits for its port to open.
  std::vector<std::string> gateway_args;
  // NATS in operator mode with TLS (docs/security.md, NATS): bulwark-nats-auth makes the
  // identities and the PKI in the suite's directory, each service connects with its own .creds and
  // the CA, and the gateway mints each sandbox's credentials. nats_url() is then TLS-only: connect
  // with bus_options().
  bool secure_nats = false;
};

class Suite {
 public:
  explicit Suite(SuiteOptions o = {});
  ~Suite();
  Suite(const Suite&) = delete;
  Suite& operator=(const Suite&) = delete;

  void start_gateway();
  void stop_gateway(int sig);
  void start_scheduler();
  void start_driver();
  void stop_driver(int sig);
  void wait_ready();  // scheduler up and the driver's heartbeats seen
  // A privacy-router with these extra flags; returns once it answers health.
  void start_router(const std::vector<std::string>& flags = {});
  // A file in the suite's directory (service logs <name>.log, gateway.db).
  std::string file(const std::string& name) const { return dir_.file(name); }

  const std::string& driver_id() const { return driver_id_; }
  const std::string& gateway_url() const { return gateway_url_; }
  const std::string& nats_url() const { return nats_.url(); }
  NatsServer& nats() { return nats_; }
  // How a test connects to this suite's NATS (with secure_nats: the admin .creds and the CA).
  Bus::Options bus_options(const std::string& name) const;
  // secure_nats: the directory of the NATS identities (<service>.creds, account.seed, ...) and the
  // PKI's CA certificate.
  std::string nats_auth_dir() const { return dir_.file("nats-auth"); }
  std::string nats_ca() const { return dir_.file("pki/ca.crt"); }
  // The --metrics-listen port of a service ("gateway-api", "scheduler", "driver-podman",
  // "policy-service", "privacy-router"); Error when the suite runs without SuiteOptions::metrics.
  int metrics_port(const std::string& service) const;
  // The admin token the gateway wrote on its first start (admin.token beside gateway.db). client()
  // sends it, and the suite exports it as BULWARK_TOKEN for the CLI it runs.
  const std::string& admin_token() const { return admin_token_; }
  httplib::Client client() const;

  // REST helpers: throw with the response body when the status is not the expected one.
  nlohmann::json create(const nlohmann::json& spec);
  nlohmann::json get(const std::string& id);
  // Polls until phase is one of `phases`; throws with the record and the services' logs if not.
  nlohmann::json wait_phase(const std::string& id, const std::set<std::string>& phases,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30));
  std::string logs_of(const std::string& service) const;  // the tail of a service's log

 private:
  Process spawn(const std::string& name, std::vector<std::string> argv);
  SuiteOptions o_;
  std::map<std::string, int> metrics_ports_;  // by service, kept across restarts
  TempDir dir_;
  NatsServer nats_;
  int http_port_;
  std::string gateway_url_;
  std::string driver_id_;
  std::string admin_token_;
  Process gateway_, scheduler_, driver_, policy_service_, router_;
};

}  // namespace bulwark::testing
