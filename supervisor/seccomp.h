#pragma once
// seccomp: the system calls the agent may not make at all, whatever paths or identity it has. A
// deny list over a default of ALLOW: it closes the kernel interfaces that escape or see through
// the other layers (namespaces, mounts, ptrace, kernel modules, BPF, io_uring, raw sockets),
// while every ordinary program keeps working. docs/seccomp.md lists each rule and why.
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/process.h"

struct seccomp_notif;
struct seccomp_notif_resp;

namespace bulwark::supervisor {

struct SeccompOptions {
  // memfd_create is denied by default: an anonymous file has no path, so Landlock's EXECUTE rule
  // cannot stop the agent from writing a binary into one and running it (fexecve).
  bool allow_memfd_create = false;
  // Denied calls go to a listener (SECCOMP_RET_USER_NOTIF) instead of failing in the kernel, so
  // the supervisor logs each one; the listener answers with the same errno, never runs the call.
  // Off: the kernel answers (ERRNO), nothing is logged.
  bool notify = false;
};

// Loads the filter into the calling thread; it stays for the thread's children and across exec.
// Denied calls fail with EPERM (clone3 with ENOSYS, see the doc). Any system call made with a
// non-native ABI (i386 via int 0x80, x32) kills the process: see docs/seccomp.md for why.
// Call it last, in the single-threaded child right before exec. It sets no_new_privs if not yet
// set. Throws bulwark::Error naming the step and errno. With opts.notify, returns the listener:
// hand it to a process WITHOUT this filter (the agent's init) before making any denied call, or
// the call blocks until the listener closes (then it fails with ENOSYS).
Fd seccomp_apply(const SeccompOptions& opts);

struct SeccompDenial {
  pid_t pid = 0;        // the caller, in the listener's PID namespace
  std::string syscall;  // e.g. "ptrace", "socket(AF_PACKET, 3, 0)"
  int err = 0;          // the errno it got
  std::string to_string() const;
};

// The listener side: answers each denied call with its rule's errno and says what was denied.
class SeccompListener {
 public:
  explicit SeccompListener(Fd fd);
  ~SeccompListener();
  SeccompListener(const SeccompListener&) = delete;
  SeccompListener& operator=(const SeccompListener&) = delete;

  int fd() const { return fd_.get(); }
  // Receives and answers one notification (call when fd() is readable). nullopt when there is
  // nothing to log: the caller died meanwhile, or clone3 without namespace flags (glibc tries
  // clone3 for every thread and falls back to clone on ENOSYS: routine, not an attempt).
  std::optional<SeccompDenial> answer_one();

 private:
  Fd fd_;
  seccomp_notif* req_ = nullptr;
  seccomp_notif_resp* resp_ = nullptr;
};

// Passing the listener from the agent's process to its init: one fd over a unix socket.
void send_fd(int sock, int fd);
Fd receive_fd(int sock);

// Every rule as {system call and condition, reason}, in filter order, for the docs.
std::vector<std::pair<std::string, std::string>> seccomp_rules_doc();

}  // namespace bulwark::supervisor
