#pragma once
// The sandbox's egress proxy: the only way out for the agent. An HTTP/1.1 proxy (CONNECT tunnels
// and absolute-form http:// requests) on one event-loop thread, so it holds thousands of
// connections without a thread each. It knows no policy: every request is put to an injected
// decision function, and every outcome is reported to an injected callback.
//
// The decision and report callbacks run on the proxy's event-loop thread: they must be quick and
// must not block, or every connection stalls with them.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bulwark::proxy {

// What a client asked for, and who asked.
struct Request {
  std::string host;  // lower-case name or IP literal (IPv6 without brackets)
  uint16_t port = 0;
  std::string method;  // "CONNECT", "GET", ...
  std::string path;    // origin-form path and query of a forwarded request; empty for CONNECT
  std::string client_addr;
  uint16_t client_port = 0;
};

struct Decision {
  bool allow = false;
  std::string rule;    // the policy entry that decided, for the 403 body and the audit trail
  std::string reason;  // why, in words a person reading the 403 understands
  // The resolved address must also pass the address check: private (RFC 1918, 100.64/10,
  // fc00::/7) addresses need allow_private; loopback, link-local, metadata and unspecified
  // addresses are refused unless they fall inside one of these CIDRs ("127.0.0.1/32", "::1").
  bool allow_private = false;
  std::vector<std::string> allowed_ips;
};

using DecideFn = std::function<Decision(const Request&)>;
// Called once per request with the outcome that was enforced: the decision as returned, or a
// deny with rule "bulwark:always-blocked" / "bulwark:private-address" / "bulwark:proxy-loop" (the
// target is the proxy's own listening address) when the address check overrode an allow, or rule
// "bulwark:policy-error" when the decision function threw. Resolve and connect failures (502/504)
// come after an allow and are reported as that allow.
using OnDecisionFn = std::function<void(const Request&, const Decision&)>;

class EgressProxy {
 public:
  struct Options {
    std::string listen_address = "127.0.0.1";  // the supervisor's veth address in a sandbox
    uint16_t listen_port = 3128;               // 0 picks a free port (see port())
    // A connection with no traffic either way for this long is closed.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(300)};
    // A client must send its whole request head within this (slow-loris protection).
    std::chrono::milliseconds header_timeout{std::chrono::seconds(30)};
    // Resolving and connecting upstream, all addresses tried included; past it the client gets 504.
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
    // Beyond this many open client connections new ones get 503 (each costs two descriptors and
    // about 32 KiB of relay buffers; the process's RLIMIT_NOFILE must allow it).
    size_t max_connections = 10000;
  };

  // Binds and listens at once (so port() is valid and a bad address fails here), throwing
  // bulwark::Error with the address and the reason. Serving starts with run_in_thread().
  EgressProxy(Options opts, DecideFn decide, OnDecisionFn on_decision);
  ~EgressProxy();  // stop()s
  EgressProxy(const EgressProxy&) = delete;
  EgressProxy& operator=(const EgressProxy&) = delete;

  uint16_t port() const;
  // Starts the event-loop thread. Throws Error if it is already running or was stopped.
  void run_in_thread();
  // Closes the listener and every connection and joins the thread. Idempotent; any thread.
  void stop();
  // Client connections open right now (for tests and metrics); any thread.
  size_t active_connections() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::proxy
