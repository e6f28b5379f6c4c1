#pragma once
// Test helper: run confinement in a forked child, never in the test runner (a Landlock domain or
// seccomp filter cannot be undone). The child records each expectation; its exit code is the
// number of those that failed (0: all held, kThrew: the body threw) and a report of what failed
// comes back on a pipe, so the parent's CHECK says exactly what the kernel did.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <string>

namespace bulwark::supervisor::testing {

inline std::string errno_name(int e) {
  if (e == 0) return "0";
  const char* n = ::strerrorname_np(e);
  return n ? n : std::to_string(e);
}

class Probe {
 public:
  // fn makes one system call and returns its result; errno is read right after it.
  template <typename F>
  long denied(const std::string& what, F fn, int want) {
    errno = 0;
    long rc = fn();
    int e = errno;
    if (rc != -1 || e != want) {
      fail(what + ": want -1/" + errno_name(want) + ", got " + std::to_string(rc) + "/" +
           errno_name(e));
    }
    return rc;
  }
  template <typename F>
  long allowed(const std::string& what, F fn) {
    errno = 0;
    long rc = fn();
    int e = errno;
    if (rc < 0) fail(what + ": want success, got " + std::to_string(rc) + "/" + errno_name(e));
    return rc;
  }
  void check(const std::string& what, bool ok) {
    if (!ok) fail(what);
  }
  void fail(const std::string& line) {
    ++failures;
    report += line + "\n";
  }
  int failures = 0;
  std::string report;
};

struct ChildOutcome {
  int status = 0;
  std::string report;
  bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  bool killed_by(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
  std::string describe() const {
    std::string s = WIFEXITED(status)     ? "child exited " + std::to_string(WEXITSTATUS(status))
                    : WIFSIGNALED(status) ? "child killed by signal " + std::to_string(WTERMSIG(status))
                                          : "child status " + std::to_string(status);
    return report.empty() ? s : s + ":\n" + report;
  }
};

constexpr int kThrew = 100;

inline ChildOutcome run_in_child(const std::function<void(Probe&)>& body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {-1, std::string("pipe: ") + std::strerror(errno)};
  pid_t pid = ::fork();
  if (pid < 0) return {-1, std::string("fork: ") + std::strerror(errno)};
  if (pid == 0) {
    ::close(p[0]);
    Probe probe;
    int code = 0;
    try {
      body(probe);
      code = probe.failures > 99 ? 99 : probe.failures;
    } catch (const std::exception& e) {
      probe.report += std::string("threw: ") + e.what() + "\n";
      code = kThrew;
    }
    const char* d = probe.report.data();
    size_t left = probe.report.size();
    while (left > 0) {
      ssize_t n = ::write(p[1], d, left);
      if (n <= 0) break;
      d += n;
      left -= static_cast<size_t>(n);
    }
    ::_exit(code);  // not exit(): the runner's atexit handlers belong to the parent
  }
  ::close(p[1]);
  ChildOutcome out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.report.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  while (::waitpid(pid, &out.status, 0) < 0 && errno == EINTR) {
  }
  return out;
}

}  // namespace bulwark::supervisor::testing
