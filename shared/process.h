#pragma once
// RAII for file descriptors and child processes. A Process that is still running when destroyed is
// sent SIGTERM, given a grace period, then SIGKILLed and reaped: no child outlives its owner by
// accident.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace bulwark {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

struct SpawnOptions {
  std::vector<std::string> argv;                 // argv[0] is looked up in PATH
  std::optional<std::vector<std::string>> env;   // "K=V" entries; nullopt = inherit
  bool pipe_stdout = false;                      // read it from Process::stdout_fd()
  bool pipe_stderr = false;
  std::string output_file;                       // when set: stdout and stderr appended here
  bool new_process_group = false;                // so a signal to the group reaches grandchildren
};

// Exit code as a shell reports it: the code, or 128 + signal number.
int exit_code_of(int wait_status);

class Process {
 public:
  // Throws Error naming argv[0] and errno when fork or exec fails (exec errors travel back on a
  // close-on-exec pipe, so "no such file" is reported here and not as a mysterious exit 127).
  static Process spawn(const SpawnOptions& opts);
  Process() = default;
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  ~Process();

  pid_t pid() const { return pid_; }
  int stdout_fd() const { return out_.get(); }
  int stderr_fd() const { return err_.get(); }
  Fd take_stdout() { return std::move(out_); }
  Fd take_stderr() { return std::move(err_); }
  void signal(int sig) const;               // to the group when new_process_group
  std::optional<int> try_wait();            // exit code when it has ended
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  int wait();
  // SIGTERM, wait up to grace, then SIGKILL. Returns the exit code.
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  bool running() const { return pid_ > 0 && !exit_code_; }
  // The caller takes over reaping (the supervisor reaps every child itself as PID 1).
  pid_t release();

 private:
  pid_t pid_ = -1;
  bool group_ = false;
  std::optional<int> exit_code_;
  Fd out_, err_;
};

}  // namespace bulwark
