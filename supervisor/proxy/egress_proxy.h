#pragma once
// The sandbox's egress proxy: the only way out for the agent. An HTTP/1.1 proxy (CONNECT tunnels
// and absolute-form http:// requests) on one event-loop thread, so it holds thousands of
// connections without a thread each, enforcing the live network policy (shared/policy_engine.h):
//
//  - every connection is attributed to the program that opened it (binary_identity.h: the
//    agent's TCP table and /proc), whose executable is pinned by SHA-256 on first use;
//  - host, port and that program's executable chain decide the connection (decide_connect);
//  - an inspected endpoint has every HTTP request judged by method and path (decide_request):
//    plain http:// requests directly, CONNECT tunnels by terminating TLS with a leaf from the
//    sandbox's CA and re-encrypting to the upstream, whose certificate is verified;
//  - loopback, link-local, metadata and private addresses are refused unless a rule names them;
//  - every outcome is an Event; a denial answers 403 with a JSON body naming the rule and policy
//    version;
//  - inference.local is served by the proxy itself, before any policy (inference.h): requests go
//    to Options::inference and the answer streams back. docs/proxy.md describes it all.
//
// The event callback runs on the proxy's event-loop thread: it must be quick and must not block.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "supervisor/proxy/binary_identity.h"
#include "supervisor/proxy/inference.h"

namespace bulwark::policy {
class CompiledPolicy;
}

namespace bulwark::proxy {

class SandboxCa;

// One enforced outcome: a connection (method CONNECT, or the method of a plain http:// request)
// or one request on an inspected connection.
struct Event {
  bool allowed = false;
  // Allowed only because the endpoint says enforcement: audit; reason says what would have denied.
  bool audit = false;
  std::string binary;  // the calling executable (/proc/<pid>/exe); empty when it was not identified
  pid_t pid = 0;       // the calling process, as the supervisor's PID namespace numbers it
  std::string host;
  uint16_t port = 0;
  std::string method;  // "CONNECT", "GET", ...
  std::string path;    // the request's path (canonical when judged); empty for CONNECT
  // "network_policies.<key>.endpoints[<i>]..." that decided, or one of the proxy's own:
  // bulwark:default-deny (nothing matched), bulwark:unidentified-caller, bulwark:binary-changed,
  // bulwark:always-blocked, bulwark:private-address, bulwark:outside-allowed-ips,
  // bulwark:proxy-loop, bulwark:policy-error.
  std::string rule;
  std::string reason;
  uint64_t policy_version = 0;  // of the policy that decided
  std::string client_addr;
  uint16_t client_port = 0;
  // Came through the transparent listener (the agent ignored the proxy settings); host is then
  // the TLS SNI or HTTP Host it sent, else the original destination address.
  bool transparent = false;
};

using EventFn = std::function<void(const Event&)>;

// Who opened a connection: peer is the client's end as accepted, local the proxy's. Called on a
// worker thread (never the event loop), possibly on two at once.
using IdentifyFn = std::function<Caller(const asio::ip::tcp::endpoint& peer, const asio::ip::tcp::endpoint& local)>;

class EgressProxy {
 public:
  struct Options {
    std::string listen_address = "127.0.0.1";  // the supervisor's veth address in a sandbox
    uint16_t listen_port = 3128;               // 0 picks a free port (see port())
    // The agent's init as the supervisor sees it: its network namespace's TCP table and its
    // descendants identify callers (BinaryIdentifier). Required unless identify is set.
    pid_t agent_init_pid = 0;
    // Replaces the /proc identification (tests, or another way to know the caller).
    IdentifyFn identify;
    // The sandbox's CA, minting the leaf certificates of inspected CONNECT tunnels. Without it a
    // CONNECT to an inspected endpoint is denied (its requests could not be checked).
    std::shared_ptr<SandboxCa> ca;
    // A PEM file of CAs trusted for upstream servers besides the system roots (an operator's
    // internal CA). Read once at construction; a bad file throws then.
    std::string upstream_ca_file;
    // A connection with no traffic either way for this long is closed.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(300)};
    // A client must send its whole request head within this (slow-loris protection); it also
    // bounds identifying the caller and, for inspected tunnels, the TLS handshakes.
    std::chrono::milliseconds header_timeout{std::chrono::seconds(30)};
    // Resolving and connecting upstream, all addresses tried included; past it the client gets 504.
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
    // Beyond this many open client connections new ones get 503 (each costs two descriptors and
    // about 32 KiB of buffers; the process's RLIMIT_NOFILE must allow it).
    size_t max_connections = 10000;
    // Worker threads identifying callers (reading /proc, hashing executables) off the event loop.
    size_t identify_threads = 2;

    // inference.local (inference.h): the policy is never consulted for it, nothing is dialled.
    // Each request goes to this handler; without one it gets a 503 saying
    // inference_unavailable_reason.
    InferenceFn inference;
    std::string inference_unavailable_reason = "no inference handler is configured in this supervisor";
    // A request (its body) larger than this gets 413. The supervisor keeps it below what one
    // NATS message can carry.
    size_t inference_max_request_bytes = kDefaultInferenceMaxRequestBytes;
    // Response bytes waiting for a slow client beyond this: the call is cancelled and the
    // connection closed, so a client that does not read cannot make the proxy hold a stream.
    size_t inference_max_buffered_bytes = kDefaultInferenceMaxBufferedBytes;

    // Transparent egress (docs/proxy.md): a second listener, on listen_address, for connections
    // the kernel redirected to it (nftables in the supervisor's namespace). Each is decided as a
    // CONNECT to its original destination (SO_ORIGINAL_DST), named by the SNI or Host it sends.
    bool transparent = false;
    uint16_t transparent_port = 0;  // 0 picks a free port (see transparent_port())
    // How long a transparent client may stay silent before it is decided on its address alone
    // (protocols where the server speaks first).
    std::chrono::milliseconds transparent_sniff_timeout{std::chrono::milliseconds(800)};
    // Where an accepted transparent socket was going. Default: getsockopt(SO_ORIGINAL_DST, and
    // IP6T_SO_ORIGINAL_DST for IPv6). Tests replace it.
    std::function<asio::ip::tcp::endpoint(int fd)> original_destination;
    // The names the sandbox's DNS answered with an address (the supervisor's DnsNames), newest
    // first: a transparent connection that carries no name is attributed to the first of them
    // the policy allows on its port, without another lookup. Called on the event loop.
    std::function<std::vector<std::string>(const asio::ip::address&)> names_for_address;
  };

  // Binds and listens at once (so port() is valid and a bad address fails here), throwing
  // bulwark::Error with the address and the reason. Serving starts with run_in_thread().
  // policy must not be null; version is reported in events and 403 bodies.
  EgressProxy(Options opts, std::shared_ptr<const policy::CompiledPolicy> policy, uint64_t version,
              EventFn on_event);
  ~EgressProxy();  // stop()s
  EgressProxy(const EgressProxy&) = delete;
  EgressProxy& operator=(const EgressProxy&) = delete;

  // Swaps the policy; any thread. Connections decided from now on use it, and so does the next
  // request on every open inspected connection. Open tunnels (not inspected) are judged again at
  // once and closed when the new policy no longer allows them. Throws Error on a null policy.
  void set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, uint64_t version);
  uint64_t policy_version() const;

  uint16_t port() const;
  // The transparent listener's port; 0 without Options::transparent.
  uint16_t transparent_port() const;
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
