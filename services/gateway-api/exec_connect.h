#pragma once
// connect: an interactive PTY shell in a running sandbox over a WebSocket (docs/exec.md). Its own
// listener (--connect-port), because cpp-httplib cannot upgrade a connection: Boost.Beast, header
// only, one thread per connection. The terminal itself runs in the sandbox like any exec
// (ExecRequest.tty); the gateway relays bytes between the WebSocket and the supervisor over NATS.
//
//   GET /v1/sandboxes/{sandbox_id}/connect?rows=R&cols=C[&command=ARG...]   (Upgrade: websocket)
//   client -> gateway   binary: terminal input; text: {"resize":{"rows":R,"cols":C}}
//   gateway -> client   binary: terminal output; text, last: {"exit_code":N} or {"error":{...}}
// Refusals before the upgrade are ordinary HTTP answers with the REST API's JSON error body.
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "services/gateway-api/exec.h"
#include "services/gateway-api/tls.h"

namespace bulwark::gateway {

// The parts of a connect request. Pure; Error(kInvalidArgument/kNotFound) naming the parameter.
struct ConnectTarget {
  std::string sandbox_ref;
  std::vector<std::string> command = {"sh"};
  uint32_t rows = 24, cols = 80;
};
ConnectTarget parse_connect_target(const std::string& target);
// A text frame from the client: the new size, or nullopt for anything else (ignored). Pure.
std::optional<std::pair<uint32_t, uint32_t>> parse_resize(const std::string& text);

class ConnectServer {
 public:
  // admit(authorization header, sandbox ref) throws Error when the caller may not connect (401,
  // 403, 404); it then finds the sandbox, which must allow exec (check_exec_allowed).
  using Admit = std::function<v1::Sandbox(const std::string& authorization, const std::string& ref)>;
  // tls enabled: every connection must complete a TLS handshake (with a client certificate when
  // tls.client_ca_file is set) before its HTTP request is read.
  ConnectServer(const std::string& addr, int port, ExecService& exec, Admit admit, const ServerTls& tls = {});
  ~ConnectServer();  // closes every connection (their commands are killed) and joins
  ConnectServer(const ConnectServer&) = delete;
  ConnectServer& operator=(const ConnectServer&) = delete;
  int port() const { return port_; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace bulwark::gateway
