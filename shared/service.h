#pragma once
// What every Bulwark service process does the same way: common flags (also read from BULWARK_*
// environment variables), logging, the NATS connection, a health responder on
// bulwark.<service>.health, and an orderly stop on SIGTERM/SIGINT (stop components, drain the bus).
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "shared/bus.h"
#include "shared/flags.h"
#include "shared/metrics.h"

namespace bulwark {

struct CommonOptions {
  std::string nats_url = "nats://127.0.0.1:4222";
  std::string log_format = "text";
  std::string log_level = "info";
  double nats_connect_timeout_s = 10;
  std::string nats_creds;  // a .creds file or its text; "" = none (docs/security.md, NATS)
  std::string nats_ca;     // CA bundle: connect to NATS over TLS trusting it; "" = plain unless tls://
  // HOST:PORT of the Prometheus listener (/metrics, /readyz, /livez; docs/observability.md); "" =
  // none, the default, so tests that start many services do not fight for ports. It answers
  // without a token: bind it to a private address.
  std::string metrics_listen;
};

// Adds --nats-url, --log-format, --log-level, --nats-connect-timeout with their BULWARK_* variables
// (Service adds --metrics-listen too).
void add_common_options(Flags& flags, CommonOptions& o);

// A running part of a service, kept alive until the service stops.
class Component {
 public:
  virtual ~Component() = default;
  virtual void stop() {}  // called on SIGTERM before the bus drains
  // "" when it can take work, else why not; /readyz answers 503 with the reason meanwhile.
  virtual std::string not_ready() const { return {}; }
};

class Service {
 public:
  explicit Service(std::string name);
  Flags& flags() { return flags_; }
  const CommonOptions& common() const { return common_; }
  const std::string& instance_id() const { return instance_id_; }
  // More /readyz checks, beside the built-in ones (NATS connected, the component's not_ready()).
  metrics::ReadinessChecks& readiness() { return readiness_; }
  // Parses flags, starts logging and NATS, calls make, then waits for SIGTERM/SIGINT. Returns the
  // process exit code: 0 after a clean stop, 2 for bad flags, 1 when start-up failed.
  int run(int argc, char** argv, const std::function<std::unique_ptr<Component>(Bus&)>& make);

 private:
  std::string not_ready();  // what /readyz answers: "" or one "what: why" line per problem
  std::string name_;
  std::string instance_id_;
  Flags flags_;
  CommonOptions common_;
  metrics::ReadinessChecks readiness_;
  // What /readyz and bulwark_nats_connected look at, from the listener's threads.
  std::mutex live_mu_;
  Bus* bus_ = nullptr;
  Component* component_ = nullptr;
  std::string phase_ = "starting";  // "" once running, then "stopping"
  metrics::Registry::Collector process_metrics_, nats_metric_;
};

}  // namespace bulwark

