#pragma once
// The one ordered path from "supervisor running" to "agent running". Each confinement mechanism
// (Landlock, seccomp, namespaces, identity) gets its own file and one step here, in the order the
// confinement issue fixes; a step that fails aborts the sandbox naming the step and errno.
#include <string>
#include <vector>

#include "shared/process.h"

namespace bulwark::supervisor {

struct AgentPlan {
  std::vector<std::string> command;
  std::vector<std::string> env;
};

// Starts the agent in its own process group with stdout/stderr piped to the supervisor.
Process start_agent(const AgentPlan& plan);

}  // namespace bulwark::supervisor
