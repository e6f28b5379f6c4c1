#include "shared/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "shared/error.h"

namespace bulwark {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}
void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

int exit_code_of(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

namespace {
void make_pipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(Code::kInternal, errno_text("pipe2", errno));
}
}  // namespace

Process Process::spawn(const SpawnOptions& o) {
  if (o.argv.empty()) throw Error(Code::kInvalidArgument, "spawn: empty command", "command");
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<char*> argv, envp;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  if (o.env) {
    for (const auto& e : *o.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  int out[2] = {-1, -1}, err[2] = {-1, -1}, status[2];
  if (o.pipe_stdout) make_pipe(out);
  if (o.pipe_stderr) make_pipe(err);
  make_pipe(status);
  Fd file;
  if (!o.output_file.empty()) {
    file.reset(::open(o.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!file) throw Error(Code::kInternal, errno_text("open(" + o.output_file + ")", errno));
  }

  pid_t pid = ::fork();
  if (pid < 0) throw Error(Code::kInternal, errno_text("fork for " + o.argv[0], errno));
  if (pid == 0) {
    if (o.new_process_group) ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // services block signals for sigwait; children must not inherit that
    if (file) {
      ::dup2(file.get(), 1);
      ::dup2(file.get(), 2);
    }
    if (o.pipe_stdout) ::dup2(out[1], 1);
    if (o.pipe_stderr) ::dup2(err[1], 2);
    if (o.env) ::execvpe(argv[0], argv.data(), envp.data());
    else ::execvp(argv[0], argv.data());
    int e = errno;
    (void)!::write(status[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(status[1]);
  if (o.pipe_stdout) ::close(out[1]);
  if (o.pipe_stderr) ::close(err[1]);
  Process p;
  p.pid_ = pid;
  p.group_ = o.new_process_group;
  if (o.pipe_stdout) p.out_.reset(out[0]);
  if (o.pipe_stderr) p.err_.reset(err[0]);
  int e = 0;
  ssize_t n;
  do n = ::read(status[0], &e, sizeof e);
  while (n < 0 && errno == EINTR);
  ::close(status[0]);
  if (n == static_cast<ssize_t>(sizeof e)) {
    p.wait();
    throw Error(Code::kInvalidArgument, errno_text("cannot run '" + o.argv[0] + "'", e), "command");
  }
  return p;
}

Process::Process(Process&& o) noexcept { *this = std::move(o); }
Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    if (running()) stop();
    pid_ = std::exchange(o.pid_, -1);
    group_ = o.group_;
    exit_code_ = std::exchange(o.exit_code_, std::nullopt);
    out_ = std::move(o.out_);
    err_ = std::move(o.err_);
  }
  return *this;
}
Process::~Process() {
  if (running()) stop();
}

void Process::signal(int sig) const {
  if (pid_ <= 0 || exit_code_) return;
  ::kill(group_ ? -pid_ : pid_, sig);
}

std::optional<int> Process::try_wait() {
  if (exit_code_ || pid_ <= 0) return exit_code_;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) exit_code_ = exit_code_of(st);
  else if (r < 0 && errno == ECHILD) exit_code_ = -1;  // reaped elsewhere
  return exit_code_;
}

std::optional<int> Process::wait_for(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!try_wait()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return exit_code_;
}

int Process::wait() {
  if (exit_code_ || pid_ <= 0) return exit_code_.value_or(-1);
  int st = 0;
  pid_t r;
  do r = ::waitpid(pid_, &st, 0);
  while (r < 0 && errno == EINTR);
  exit_code_ = r == pid_ ? exit_code_of(st) : -1;
  return *exit_code_;
}

int Process::stop(std::chrono::milliseconds grace) {
  signal(SIGTERM);
  if (auto c = wait_for(grace)) return *c;
  signal(SIGKILL);
  return wait();
}

pid_t Process::release() {
  out_.reset();
  err_.reset();
  return std::exchange(pid_, -1);
}

}  // namespace bulwark
