#pragma once
// The whole suite as real processes for end-to-end tests: nats-server with JetStream, a podman API
// service, gateway-api, scheduler and driver-podman on free ports, each logging to its own file.
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "shared/process.h"
#include "tests/support/support.h"

namespace bulwark::testing {

std::string bin(const std::string& name);  // path of a built executable
std::string source_dir();

// One podman API service per test binary (started on first use), on a private socket, with the
// project's containers.conf; the base image is built if missing.
const std::string& podman_socket();

class Suite {
 public:
  Suite();
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
  TempDir dir_;
  NatsServer nats_;
  int http_port_;
  std::string gateway_url_;
  std::string driver_id_;
  Process gateway_, scheduler_, driver_, policy_service_, router_;
};

}  // namespace bulwark::testing
