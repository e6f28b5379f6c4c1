#pragma once
// What every Bulwark service process does the same way: common flags (also read from BULWARK_*
// environment variables), logging, the NATS connection, a health responder on
// bulwark.<service>.health, and an orderly stop on SIGTERM/SIGINT (stop components, drain the bus).
#include <functional>
#include <memory>
#include <string>

#include "shared/bus.h"
#include "shared/flags.h"

namespace bulwark {

struct CommonOptions {
  std::string nats_url = "nats://127.0.0.1:4222";
  std::string log_format = "text";
  std::string log_level = "info";
  double nats_connect_timeout_s = 10;
};

// Adds --nats-url, --log-format, --log-level, --nats-connect-timeout with their BULWARK_* variables.
void add_common_options(Flags& flags, CommonOptions& o);

// A running part of a service, kept alive until the service stops.
class Component {
 public:
  virtual ~Component() = default;
  virtual void stop() {}  // called on SIGTERM before the bus drains
};

class Service {
 public:
  explicit Service(std::string name);
  Flags& flags() { return flags_; }
  const CommonOptions& common() const { return common_; }
  const std::string& instance_id() const { return instance_id_; }
  // Parses flags, starts logging and NATS, calls make, then waits for SIGTERM/SIGINT. Returns the
  // process exit code: 0 after a clean stop, 2 for bad flags, 1 when start-up failed.
  int run(int argc, char** argv, const std::function<std::unique_ptr<Component>(Bus&)>& make);

 private:
  std::string name_;
  std::string instance_id_;
  Flags flags_;
  CommonOptions common_;
};

// Replies to every request on each subject with unimplemented, naming the issue that brings it.
class NotImplemented : public Component {
 public:
  NotImplemented(Bus& bus, const std::vector<std::string>& subjects, const std::string& queue,
                 const std::string& what);

 private:
  std::vector<Subscription> subs_;
};

}  // namespace bulwark

namespace bulwark {
// main() of a compute driver whose backend is not built yet: it takes --driver-id, answers health
// and replies unimplemented on bulwark.driver.<driver_id>.>; it sends no heartbeat, so the
// scheduler never places work on it.
int run_pending_driver(int argc, char** argv, const std::string& kind, const std::string& what);
}  // namespace bulwark
