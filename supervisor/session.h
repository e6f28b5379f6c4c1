#pragma once
// The supervisor's side of the gateway session: it connects OUT to NATS (the gateway never dials
// into a sandbox), checks in, relays the agent's output and reports how the agent ended. Reports
// go through JetStream so a gateway that restarts meanwhile still receives them.
//
// Log lines and denial events are handed to a publisher thread: persisting one waits for the
// JetStream ack (up to seconds while NATS is unreachable), and a denial is raised on the egress
// proxy's one event-loop thread, which must never wait on NATS. State reports stay synchronous,
// after the lines queued before them.
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"
#include "shared/service.h"
#include "supervisor/contain.h"

namespace bulwark::supervisor {

class Session {
 public:
  // Lines queued beyond this: log_line waits for room (back-pressure on the agent's output);
  // denial never waits and drops the event instead (counted, and logged here).
  static constexpr size_t kMaxQueuedLines = 10000;

  // Connects with the common NATS flags (--nats-url, --nats-creds, --nats-ca, ...); its reply
  // inboxes lie below nats_auth::sandbox_inbox_prefix, the only ones its credentials may read.
  Session(const CommonOptions& common, std::string sandbox_id);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  void check_in(const ContainReport& report);
  // Queued for publishing; waits only while kMaxQueuedLines are queued.
  void log_line(const std::string& stream, const std::string& line);
  // A denial event: a LogLine on stream "denial" carrying the structured Denial (docs/subjects.md).
  // Never waits: safe on the proxy's event loop.
  void denial(const v1::Denial& d, const std::string& line);
  Bus& bus() { return *bus_; }
  void agent_exited(int exit_code);
  void failed(const std::string& reason);
  void close();

 private:
  void publish_log(v1::LogLine& l, bool may_wait);
  void publisher();
  // Waits until every queued line was published (or given up on), at most timeout.
  void flush_lines(std::chrono::milliseconds timeout);
  void stop_publisher();
  void report(int kind, int exit_code, const std::string& reason, const v1::Confinement* c = nullptr);
  std::string sandbox_id_;
  std::unique_ptr<Bus> bus_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<v1::LogLine> queue_;
  bool publishing_ = false;  // a line taken off the queue is being published
  bool stopping_ = false;
  uint64_t dropped_ = 0;
  std::thread publisher_;  // last: started once everything above exists
};

}  // namespace bulwark::supervisor
