#pragma once
// `bulwark sandbox connect`: an interactive shell in a running sandbox over the gateway's WebSocket
// listener (docs/exec.md): the terminal in raw mode, SIGWINCH sent on as a resize, and restored
// on the way out. The URL and message parts are pure and unit-tested.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/client.h"

namespace bulwark::cli {

struct ConnectEndpoint {
  std::string host;
  std::string port;
  bool tls = false;  // an https:// gateway: wss:// (its connect listener speaks TLS too)
};
// The connect listener of the gateway at gateway_url: its host, port connect_port (-1: the
// gateway's port + 1, as the gateway's --connect-port default). Throws CliError(kUsage).
ConnectEndpoint connect_endpoint(const std::string& gateway_url, int connect_port);
std::string connect_target(const std::string& ref, uint32_t rows, uint32_t cols, const std::vector<std::string>& command);
std::string resize_message(uint32_t rows, uint32_t cols);
// The final text frame: the command's exit code, or an error message (thrown as CliError).
std::optional<int> exit_of_text_frame(const std::string& text);

// Runs the session; returns the remote shell's exit code. Throws CliError.
// tls: as for REST calls (an https:// gateway's CA and client certificate).
int connect_terminal(const std::string& gateway_url, int connect_port, const std::string& token, const std::string& ref,
                     const std::vector<std::string>& command, const TlsFiles& tls = {});

}  // namespace bulwark::cli
