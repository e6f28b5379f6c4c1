#pragma once
// Landlock: the agent's filesystem view, enforced by the kernel on paths (not on mount tables), so
// it holds even against root inside the sandbox. Split in two because the paths must be opened
// while the supervisor can still see and open them, and the domain applied only in the child that
// is about to exec the agent:
//
//   LandlockPlan plan = landlock_prepare(rules);   // privileged, before namespaces and identity
//   ... fork, namespaces, drop identity, prctl(PR_SET_NO_NEW_PRIVS, 1) ...
//   landlock_enforce(plan);                        // single-threaded child, right before seccomp
//
// The ruleset handles every filesystem right the running kernel knows, so anything the rules do
// not grant is denied. From ABI 6 it is also scoped: the agent cannot signal processes outside its
// domain (the supervisor included) nor connect to abstract unix sockets made outside it, so any
// channel to the supervisor must be an inherited fd or a pathname socket the rules grant. Network rights are not handled here: the agent's network is confined by
// its network namespace and the proxy, which can tell hosts apart (Landlock only sees ports).
#include <string>
#include <vector>

#include "shared/process.h"

namespace bulwark::supervisor {

// The Landlock ABI version the kernel offers; 0 when Landlock is not built in or not enabled.
int landlock_abi();

struct LandlockRules {
  // Paths (directories cover everything beneath them; symlinks are followed when opening, so the
  // rule lands on the target). read_only: execute, read files, list directories.
  std::vector<std::string> read_only;
  // Every right the kernel knows: create, remove, rename, write, truncate, device ioctls.
  std::vector<std::string> read_write;
  // false (best effort): a missing path is skipped and a kernel without Landlock yields an empty
  // plan, both reported in the plan. true: either throws.
  bool hard_requirement = false;
  // ABI 7: send the agent's denials to the audit log (LOG_NEW_EXEC_ON). Off by default, as the
  // kernel advises for sandboxes of untrusted programs: an agent probing its box floods audit.
  bool audit_denials = false;
};

struct LandlockPlan {
  Fd ruleset;                            // empty when Landlock is unavailable (best effort)
  int abi = 0;                           // the kernel's ABI the ruleset was built for
  std::vector<std::string> skipped;      // "<path>: <reason>", paths left out under best effort
  std::vector<std::string> unenforced;   // rights or scopes this kernel cannot enforce
  unsigned restrict_flags = 0;           // landlock_restrict_self flags (ABI 7 audit logging)
};

// Builds the ruleset and adds one rule per path, with rights fitted to the file type (a rule on a
// regular file gets no directory rights, which the kernel would reject). Throws bulwark::Error
// naming the step, the path and errno.
LandlockPlan landlock_prepare(const LandlockRules& rules);

// Restricts the calling thread (and what it later forks or execs) to the plan, then closes the
// ruleset fd. The caller must already have set prctl(PR_SET_NO_NEW_PRIVS, 1): the kernel requires
// it of callers without CAP_SYS_ADMIN, and a root caller that skipped it would get a domain that a
// setuid binary could shed; this throws kFailedPrecondition when it is not set. Call it in the
// single-threaded child right before exec: other threads of the process are not restricted.
// A plan without a ruleset (best effort on a kernel without Landlock) does nothing.
void landlock_enforce(LandlockPlan& plan);

}  // namespace bulwark::supervisor
