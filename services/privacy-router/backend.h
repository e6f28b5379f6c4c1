#pragma once
// Talking to a backend: its base_url, the local-only address check, and one HTTP(S) exchange
// whose response head and body pieces are handed on as they arrive (cpp-httplib client, OpenSSL).
// The pure helpers come first; Forwarder is the only part that opens sockets.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "services/privacy-router/api.h"

namespace httplib {
class ClientImpl;
}

namespace bulwark::privacy_router {

struct BaseUrl {
  bool https = false;
  std::string host;    // a name or an IP literal (IPv6 without brackets)
  int port = 0;
  std::string prefix;  // path without a trailing '/', "" for none
  std::string origin() const;  // "https://host:port"
};
// http(s)://host[:port][/prefix]. Throws Error(kInvalidArgument) naming what is wrong.
BaseUrl parse_base_url(const std::string& url);
// The upstream target: prefix + the caller's path and query, where a prefix ending in "/v1" does
// not double the "/v1" the caller's path starts with ("http://h:11434/v1" is how Ollama,
// vLLM and llama.cpp are usually given).
std::string upstream_target(const std::string& prefix, const std::string& path_and_query);

// Whether an IP literal is loopback, RFC 1918 / ULA private, or link-local (IPv4-mapped IPv6
// addresses count as their IPv4 address). Anything else, or not an IP literal, is not local.
bool is_local_address(const std::string& ip);
// The addresses host resolves to (an IP literal resolves to itself). Throws Error(kUnavailable).
std::vector<std::string> resolve_host(const std::string& host);
// "" when every address is local, else "local-only backend <provider> resolves to public address X".
std::string local_only_violation(const std::string& provider, const std::vector<std::string>& addresses);

struct ForwardOptions {
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds first_byte_timeout{300000};  // request sent -> response head
  std::chrono::milliseconds idle_timeout{120000};        // no body bytes for this long -> cut
  std::string backend_ca;  // PEM file trusted besides the system roots; "" = system roots only
  size_t idle_per_origin = 8;  // kept-alive connections per backend address
};

struct UpstreamRequest {
  BaseUrl url;
  // When not empty, connect only to these (checked) addresses, in order, never to what DNS says
  // later; the Host header and TLS name stay url.host.
  std::vector<std::string> connect_ips;
  std::string method;
  std::string target;  // path and query
  Headers headers;
  std::string body;
  std::string secret;  // the backend key: scrubbed from anything kept of the upstream's answers
};

struct ForwardResult {
  enum class Outcome {
    kFailed,     // nothing reached the caller: connect error, no head in time, or a 5xx (try the next)
    kCompleted,  // head and the whole body relayed
    kCut,        // head relayed, then the body stopped early
  };
  Outcome outcome = Outcome::kFailed;
  int status = 0;
  std::string error;  // kFailed: why this backend failed; kCut: why the body stopped
  bool idle_timeout = false;  // kCut because no bytes came for idle_timeout
};

class Forwarder {
 public:
  // Throws Error(kInvalidArgument, field "backend-ca") when backend_ca cannot be loaded.
  explicit Forwarder(ForwardOptions o);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Returns false when the caller is gone: the exchange is abandoned.
  using OnHead = std::function<bool(int status, const Headers& headers)>;
  using OnChunk = std::function<bool(std::string_view data)>;
  // One exchange. on_head runs once for a status below 500 (a 5xx is read, kept as a short
  // excerpt in error, and reported kFailed); on_chunk for each body piece as it is read.
  ForwardResult forward(const UpstreamRequest& r, const OnHead& on_head, const OnChunk& on_chunk);
  // Shutdown: cuts every exchange in flight and refuses new ones.
  void abort_all();
  const ForwardOptions& options() const { return o_; }

 private:
  struct Attempt;
  ForwardResult exchange(const UpstreamRequest& r, const std::string& ip, const OnHead& on_head,
                         const OnChunk& on_chunk, bool& connect_failed);
  std::unique_ptr<httplib::ClientImpl> take(const std::string& key, const UpstreamRequest& r, const std::string& ip);
  void give_back(const std::string& key, std::unique_ptr<httplib::ClientImpl> c);

  ForwardOptions o_;
  std::mutex mu_;
  bool aborted_ = false;
  std::atomic<bool> stopping_{false};  // aborted_, readable by the watchdogs without mu_
  std::map<std::string, std::vector<std::unique_ptr<httplib::ClientImpl>>> idle_;
  std::set<httplib::ClientImpl*> active_;
};

}  // namespace bulwark::privacy_router
