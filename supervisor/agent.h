#pragma once
// Starting the agent command and relaying its output line by line.
#include <functional>
#include <string>
#include <vector>

#include "shared/process.h"

namespace bulwark::supervisor {

// The agent's environment: the supervisor's own minus its BULWARK_* settings (the NATS URL and
// sandbox id are the supervisor's business), with a PATH when none was given.
std::vector<std::string> agent_environment(char** environ_in);

// Reads fd until EOF, calling on_line for each line (a partial last line too; lines over
// max_line bytes are split). Returns when the writer side is closed.
void relay_lines(int fd, size_t max_line, const std::function<void(const std::string&)>& on_line);

}  // namespace bulwark::supervisor
