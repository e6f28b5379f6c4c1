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

// A line read from a pseudo-terminal's master without the '\r' the terminal's output processing
// (ONLCR) put before its '\n', so `sandbox logs` shows the same text for a tty as for a pipe.
std::string tty_line(std::string line);

// Opens a pseudo-terminal for the agent (spec.tty) of rows x cols (so `stty size` and full-screen
// programs see a sane size). The master stays with the supervisor; the slave is the agent's
// stdin, stdout and stderr and controlling terminal. Both are close-on-exec.
struct Pty {
  Fd master, slave;
};
Pty open_pty(unsigned rows, unsigned cols);

}  // namespace bulwark::supervisor
