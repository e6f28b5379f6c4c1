#pragma once
// The supervisor's side of the gateway session: it connects OUT to NATS (the gateway never dials
// into a sandbox), checks in, relays the agent's output and reports how the agent ended. Reports
// go through JetStream so a gateway that restarts meanwhile still receives them.
#include <memory>
#include <string>

#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"
#include "supervisor/contain.h"

namespace bulwark::supervisor {

class Session {
 public:
  Session(const std::string& nats_url, std::string sandbox_id, std::chrono::milliseconds connect_timeout);
  void check_in(const ContainReport& report);
  void log_line(const std::string& stream, const std::string& line);
  // A denial event: a LogLine on stream "denial" carrying the structured Denial (docs/subjects.md).
  void denial(const v1::Denial& d, const std::string& line);
  Bus& bus() { return *bus_; }
  void agent_exited(int exit_code);
  void failed(const std::string& reason);
  void close();

 private:
  void publish_log(v1::LogLine& l);
  void report(int kind, int exit_code, const std::string& reason, const v1::Confinement* c = nullptr);
  std::string sandbox_id_;
  std::unique_ptr<Bus> bus_;
};

}  // namespace bulwark::supervisor
