#pragma once
// seccomp: the system calls the agent may not make at all, whatever paths or identity it has. A
// deny list over a default of ALLOW: it closes the kernel interfaces that escape or see through
// the other layers (namespaces, mounts, ptrace, kernel modules, BPF, io_uring, raw sockets),
// while every ordinary program keeps working. docs/seccomp.md lists each rule and why.
#include <string>
#include <utility>
#include <vector>

namespace bulwark::supervisor {

struct SeccompOptions {
  // memfd_create is denied by default: an anonymous file has no path, so Landlock's EXECUTE rule
  // cannot stop the agent from writing a binary into one and running it (fexecve).
  bool allow_memfd_create = false;
};

// Loads the filter into the calling thread; it stays for the thread's children and across exec.
// Denied calls fail with EPERM (clone3 with ENOSYS, see the doc). Any system call made with a
// non-native ABI (i386 via int 0x80, x32) kills the process: see docs/seccomp.md for why.
// Call it last, in the single-threaded child right before exec. It sets no_new_privs if not yet
// set. Throws bulwark::Error naming the step and errno.
void seccomp_apply(const SeccompOptions& opts);

// Every rule as {system call and condition, reason}, in filter order, for the docs.
std::vector<std::pair<std::string, std::string>> seccomp_rules_doc();

}  // namespace bulwark::supervisor
