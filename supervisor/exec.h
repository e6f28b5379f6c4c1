#pragma once
// exec into the running sandbox (docs/exec.md): commands the gateway asks for over NATS
// (bulwark.exec.<sandbox_id>.>, ExecRequest/ExecInput/ExecFrame in exec.proto) are forked by the
// agent's init over the control channel (exec_control.h), so they are confined exactly like the
// agent. This side makes their pipes (or a PTY, whose master it keeps: resize is TIOCSWINSZ on
// it), relays stdin and output frames, enforces the timeout (SIGKILL to the process group) and
// the output cap, and reports the exit code.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "bulwark/v1/exec.pb.h"
#include "shared/bus.h"
#include "shared/process.h"

namespace bulwark::supervisor {

class ExecServer {
 public:
  struct Options {
    std::string sandbox_id;
    uint64_t max_output_bytes = 64ull << 20;  // per exec, stdout + stderr; a request may ask for less
    size_t max_running = 32;                  // execs at once; more are refused
    // After the command exits, output still in flight (a background child holding the pipe) is
    // awaited this long.
    std::chrono::milliseconds drain_after_exit{500};
  };
  using Sink = std::function<void(const v1::ExecFrame&)>;

  // control: the supervisor's end of init's control channel. on_agent_exit runs (on the reader
  // thread) when init reports that the agent ended (keep_after_exit only).
  ExecServer(Fd control, Options o, std::function<void(int)> on_agent_exit);
  // Kills every running exec, stops the reader and waits for every thread.
  ~ExecServer();
  ExecServer(const ExecServer&) = delete;
  ExecServer& operator=(const ExecServer&) = delete;

  // Answers requests on bulwark.exec.<sandbox_id>.>; bus must outlive this server.
  void serve(Bus& bus);
  // Starts one exec; frames (started, output..., end) go to sink from the exec's own thread.
  // Refusals (bad request, too many running) are an end frame with `error`, never an exception.
  void start(const v1::ExecRequest& req, Sink sink);
  // Input for a running exec (by exec_id); unknown ids are ignored (it ended meanwhile).
  void input(const std::string& exec_id, const v1::ExecInput& in);
  size_t running() const;

  struct Run;

 private:
  void reader();
  void send_control(const std::string& packet, const std::vector<int>& fds = {});
  void run(std::shared_ptr<Run> r);

  Options o_;
  std::function<void(int)> on_agent_exit_;
  Fd control_;
  mutable std::mutex mu_;
  std::mutex send_mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Run>> runs_;
  std::atomic<bool> init_gone_{false};
  std::thread reader_;
  Subscription sub_;  // last: unsubscribed first
};

}  // namespace bulwark::supervisor
