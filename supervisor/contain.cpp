#include "supervisor/contain.h"

namespace bulwark::supervisor {

Process start_agent(const AgentPlan& plan) {
  // Steps, in order (confinement issue): prepare Landlock fds -> mount/PID/IPC/UTS namespaces ->
  // agent network namespace -> drop identity and capabilities, no_new_privs -> Landlock
  // restrict_self -> seccomp -> exec. Today: exec with the agent's environment only.
  return Process::spawn({.argv = plan.command,
                         .env = plan.env,
                         .pipe_stdout = true,
                         .pipe_stderr = true,
                         .new_process_group = true});
}

}  // namespace bulwark::supervisor
