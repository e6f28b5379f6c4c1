#pragma once
// The one ordered path from "supervisor running" to "agent running", like nsjail's containProc.
// Each mechanism lives in its own file; this file only decides the order, which matters:
//
//   supervisor (root, before any thread exists)
//    1. clone the agent's init into new mount, PID, IPC, UTS and network namespaces; it waits
//   supervisor
//    2. create the veth pair into the agent's network namespace       (netns.cpp)
//    3. start the egress proxy on its end, then release the init       (main.cpp)
//   agent init (pid 1 of the new PID namespace, still root)
//    4. network: lo, address, route via the supervisor, no IPv6, firewall   (netns.cpp, firewall.cpp)
//    5. mounts: / private, a fresh /proc for the new PID namespace; hostname
//    6. Landlock: open every allowed path while still privileged        (landlock.cpp)
//    7. RLIMIT_NPROC (fork bombs), then identity: bounding set, groups, gid, uid   (identity.cpp)
//    8. no_new_privs, Landlock restrict_self (tagged for the audit log)   (landlock.cpp)
//    9. fork the agent; it loads seccomp (denials go to a listener it hands to init) and execs
//       the command; init stays as its reaper, relays signals and answers the listener
//       (seccomp.cpp): init itself has no filter, so it can read a caller's clone3 arguments
//   10. on request over the control channel (exec_control.h), init forks more commands (exec,
//       file transfer, connect) the way it forked the agent: they inherit everything above and
//       load the same seccomp filter, whose listener init answers too
//
// A step that fails aborts the sandbox with "step: what failed: errno text"; nothing is skipped
// silently (best_effort Landlock reports what it could not enforce as notes).
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "shared/policy.h"
#include "shared/process.h"
#include "supervisor/netns.h"

namespace bulwark::supervisor {

inline constexpr uint16_t kProxyPort = 3128;
inline constexpr uint16_t kTransparentPort = 3129;  // the proxy's transparent listener

struct ContainOptions {
  std::string sandbox_id;
  std::vector<std::string> command;
  std::vector<std::string> env;  // the agent's environment; proxy variables are added here
  policy::Policy policy;
  uint64_t nproc_limit = 4096;
  std::string workdir = "/sandbox";
  // Files the supervisor made for the agent (the trust bundle with the sandbox's CA), readable
  // whatever the policy's filesystem rules say.
  std::vector<std::string> extra_read_only;
  // Transparent egress: the agent's firewall lets TCP to any address out (the supervisor
  // redirects it to the proxy) and DNS to the supervisor; resolv_conf, when set, is bind-mounted
  // over the agent's /etc/resolv.conf (it names the supervisor's DNS responder).
  bool transparent = false;
  std::string resolv_conf;
  // spec.keep_after_exit: when the agent ends, init stays (reporting "agent CODE" on the control
  // channel) so exec and download still work until the sandbox is deleted (SIGTERM to init).
  bool keep_after_exit = false;
  // spec.tty: the agent runs on a pseudo-terminal (stdin, stdout and stderr; session leader with it
  // as controlling terminal); its output is one stream, read from the master (take_stdout).
  bool tty = false;
};

struct ContainReport {
  int landlock_abi = 0;
  std::vector<std::string> notes;  // what best_effort could not enforce, and why
  double setup_ms = 0;             // from clone to the agent's exec
};

// The filesystem rules applied when a policy has no filesystem_policy: system directories
// read-only, the workdir and /tmp writable.
policy::FilesystemPolicy default_filesystem_policy();
// HTTP_PROXY and friends pointing at the proxy, added to env (replacing any the caller gave).
std::vector<std::string> with_proxy_env(std::vector<std::string> env, const std::string& proxy_url);

class AgentLauncher {
 public:
  // Step 1. Must run while the supervisor has no other thread (the child is a fork-like copy).
  explicit AgentLauncher(ContainOptions o);
  ~AgentLauncher();
  AgentLauncher(const AgentLauncher&) = delete;
  AgentLauncher& operator=(const AgentLauncher&) = delete;

  pid_t pid() const { return pid_; }            // the agent's init, as the supervisor sees it
  const VethPlan& veth() const { return veth_; }
  std::string proxy_url() const;
  // The agent's environment as cloned into init (the proxy variables included).
  const std::vector<std::string>& env() const { return o_.env; }
  // Step 2.
  void setup_network();
  // Steps 4-9 run in the child; returns once the agent command was exec'd, or throws the error
  // of the step that failed (the child has exited then). env, when given, replaces the agent's
  // environment: it travels to init over the release pipe, so values learnt after the clone (the
  // provider environment, fetched over NATS) reach the agent without touching a file or the
  // supervisor's own environment.
  ContainReport release(std::optional<std::vector<std::string>> env = std::nullopt);
  // With tty, take_stdout is the pseudo-terminal's master and take_stderr is empty (-1).
  Fd take_stdout() { return std::move(out_); }
  Fd take_stderr() { return std::move(err_); }
  bool tty() const { return o_.tty; }
  // Denials init saw (seccomp), one line each; EOF when the sandbox ends.
  Fd take_events() { return std::move(events_); }
  // The exec control channel to init (exec_control.h): spawn confined commands, learn exit codes.
  Fd take_control() { return std::move(control_); }
  // The comm of the process that made the agent's Landlock domain, as the kernel's audit records
  // of the domain show it ("bw-" + 12 hex digits).
  const std::string& audit_tag() const { return audit_tag_; }

 private:
  ContainOptions o_;
  VethPlan veth_;
  pid_t pid_ = -1;
  bool network_up_ = false;
  Fd go_, report_, out_, err_, events_, control_;
  std::string audit_tag_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace bulwark::supervisor
