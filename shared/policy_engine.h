#pragma once
// The network policy engine: a parsed Policy compiled once into an immutable structure that
// answers, per connection, "may this process open host:port?" and, per HTTP request on an
// inspected connection, "may it send METHOD TARGET?". Pure: no sockets, no I/O, no clock.
//
// Semantics are OpenShell's (network_policies in its policy schema); where the schema is silent
// the choice is written next to the field or function below. A CompiledPolicy is never changed
// after compile(), so any number of threads may ask it at once, and a proxy swaps policies by
// swapping the shared_ptr (std::atomic<std::shared_ptr<const CompiledPolicy>>).
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/policy.h"

namespace bulwark::policy {

// A glob as the schema uses them. `*` matches any run of characters except `sep`, `**` any run
// including `sep`, `?` one character except `sep`, `[a-z]`/`[!0]`/`[^0]` one character of (not
// of) a class, `\x` a literal x. sep = '/' for paths and binaries, '.' for a host label, '\0' for
// query values (then `*` = `**`). Compiled once: matching never parses the pattern again.
class Glob {
 public:
  Glob() = default;
  // Throws Error(kInvalidArgument) naming the pattern when it is malformed (unterminated `[`).
  Glob(std::string_view pattern, char sep);
  bool match(std::string_view s) const;
  const std::string& pattern() const { return pattern_; }

 private:
  enum Kind : uint8_t { kChar, kAny, kClass, kStar, kDoubleStar };
  struct Token {
    Kind kind;
    char c;        // kChar
    bool negate;   // kClass
    uint16_t set;  // kClass: index into classes_
  };
  enum Mode : uint8_t { kExact, kPrefix, kAutomaton };
  bool run(std::string_view s) const;

  std::string pattern_, literal_;  // literal_: the whole pattern (kExact) or what precedes `**`
  Mode mode_ = kExact;
  char sep_ = 0;
  std::vector<Token> tokens_;
  std::vector<std::array<uint64_t, 4>> classes_;  // 256-bit character sets
  // Up to 63 tokens: a bit-parallel automaton, bit i = tokens [0, i) matched. consumes_[c] has
  // bit i when token i is a character or class accepting byte c (c != sep).
  std::vector<uint64_t> consumes_;
  uint64_t any_ = 0, star_ = 0, double_star_ = 0;  // '?' tokens; '*' tokens; '**' tokens
};

// Schema host matching, case-insensitive, a trailing '.' ignored on both sides: exact; "*" inside
// the first label matches within that label only ("*.example.com" = one label,
// "*-ai.example.com"); "**.example.com" = one or more labels, never example.com itself.
bool host_matches(std::string_view pattern, std::string_view host);

// An HTTP request path made canonical before any glob sees it, so that what the policy judges is
// what a server resolves: every %HH decoded (hex in either case) and re-encoded uppercase unless
// it is a plain path character, `;params` cut from each segment (Tomcat's `..;` trick), `//`
// collapsed, `.` and `..` resolved, a trailing '/' kept. Refused (ok = false, error says why): a
// `..` above '/', an encoded '/' (%2F) unless allow_encoded_slash (then it stays %2F inside its
// segment, and a `.`/`..` hidden behind it is refused), control or non-ASCII bytes raw or
// encoded, '\' raw or encoded (some servers read it as '/'), a malformed %, more than 4096 bytes.
struct CanonicalPath {
  bool ok = false;
  std::string path;   // when ok: starts with '/'
  std::string error;  // when !ok
};
CanonicalPath canonicalize_path(std::string_view raw_path, bool allow_encoded_slash);

// How the proxy must treat an allowed connection's bytes.
enum class L7Protocol : uint8_t {
  kNone,       // not inspected: L4 passthrough (no protocol) or protocol: tcp
  kRest,       // HTTP requests, each judged by decide_request
  kWebsocket,  // HTTP upgrade (GET) then client text messages (method WEBSOCKET_TEXT)
  kGraphql,    // GraphQL over HTTP: operation rules need the body
  kSql,
  kJsonRpc,
  kMcp,
};

class CompiledPolicy;

// The answer for one connection. string_views point into `policy`, which the decision keeps
// alive: a connection is judged, request by request, by the policy snapshot that admitted it.
struct ConnectDecision {
  bool allow = false;
  // Allowed only because the endpoint says enforcement: audit (log it as a violation): the host
  // and port matched an audit endpoint whose binaries do not include this process.
  bool audit = false;
  // "network_policies.<key>.endpoints[<i>]" that decided; on a deny, the endpoint that matched
  // host:port but not the binary, or empty.
  std::string_view rule;
  std::string_view binary;  // the binaries[].path pattern that matched; empty unless allowed by it
  std::string reason;       // why it was denied, or (audit) why it would have been
  // The proxy must parse the traffic and ask decide_request per request: some matched endpoint
  // has an L7 protocol, or access/rules/deny_rules.
  bool inspect = false;
  L7Protocol protocol = L7Protocol::kNone;  // of the first inspected matched endpoint
  // allowed_ips of every matched endpoint, plus "<ip>/32" ("/128") for an endpoint whose host
  // is that IP literal: addresses the proxy may dial even when private or loopback.
  std::vector<std::string_view> allowed_ips;
  // Some matched endpoint names this exact host (no wildcard): it may then resolve to a private
  // address; a wildcard or hostless endpoint needs allowed_ips for that.
  bool exact_host = false;
  // Every matched endpoint is hostless (allowed_ips without host, matching any host on its
  // ports): the proxy MUST refuse any resolved address outside allowed_ips.
  bool ips_only = false;

  std::shared_ptr<const CompiledPolicy> policy;  // the snapshot that decided
  std::vector<uint32_t> endpoints;               // matched endpoints (engine-internal indices)
};

// The answer for one request on a connection. rule points into the connection's policy: valid
// while the ConnectDecision lives.
struct RequestDecision {
  bool allow = false;
  bool audit = false;  // would be denied; allowed because the endpoint says enforcement: audit
  // "network_policies.<key>.endpoints[<i>].rules[<j>]", ".deny_rules[<j>]", ".access=<preset>",
  // or the endpoint itself when nothing in it allowed the request or the target was refused.
  std::string_view rule;
  std::string reason;  // why allowed or denied
  // The canonical path the decision was made on: forward this, not the client's bytes, so the
  // server cannot resolve the request differently. Empty when the target was refused or the
  // connection is not inspected.
  std::string path;
};

class CompiledPolicy : public std::enable_shared_from_this<CompiledPolicy> {
 public:
  // Compiles p: hosts indexed, globs compiled, rule names built. Throws Error(kInvalidArgument)
  // naming the field (e.g. network_policies.gh.endpoints[0].rules[1].path) when a glob is
  // malformed, a protocol or access value unknown, or rules set on protocol tcp (never
  // inspected). Otherwise parse_policy's validation is assumed; an endpoint it would have
  // refused (no ports, no host nor allowed_ips) simply never matches.
  static std::shared_ptr<const CompiledPolicy> compile(const Policy& p);

  // May a process open host:port? exe_chain = [its executable, parent's, grandparent's, ...] as
  // the kernel resolved them (/proc/<pid>/exe); a binaries[] pattern matching any of them
  // counts, as in OpenShell (an agent's children inherit its grants). Default deny. Endpoints
  // are tried in file order; every endpoint whose host, port and binaries match is kept for
  // decide_request. A network policy with no binaries allows nobody (the schema: "only the
  // listed binaries are permitted").
  ConnectDecision decide_connect(std::string_view host, uint16_t port, std::span<const std::string> exe_chain) const;

  // Does some endpoint name this host (exactly or by a wildcard), whatever its ports and
  // binaries? The sandbox's DNS answers only such names: a name no rule could ever allow is never
  // looked up, so queries cannot carry data out. Hostless (allowed_ips only) endpoints name no host.
  bool names_host(std::string_view host) const;
  // The exact (non-wildcard) hosts of endpoints listing this port, in file order, without
  // duplicates: the names a transparent connection that carries no name (no SNI, no Host; e.g.
  // protocol: tcp) may be attributed to when one of them resolves to its destination address.
  std::vector<std::string> exact_hosts_on_port(uint16_t port) const;

  ~CompiledPolicy();
  struct Data;  // engine-internal: the indexes, defined in policy_engine.cpp

 private:
  explicit CompiledPolicy(std::unique_ptr<const Data> d);
  std::unique_ptr<const Data> d_;
  friend RequestDecision decide_request(const ConnectDecision&, std::string_view, std::string_view);
};

// May a connection that decide_connect allowed send `method target`? target is the HTTP request
// target: origin-form "/path?query" or absolute-form "http://host/path?query". A connection
// that is not inspected allows every request. Otherwise the candidates are the connection's
// inspected endpoints whose `path` selector matches; L4-only endpoints on the same connection
// grant nothing once it is inspected (OpenShell). Then: a matching deny rule of an enforcing
// candidate denies; else any candidate's access preset or allow rule allows (a deny rule that
// matched on an audit candidate makes it an audit allow); else deny, or audit-allow when every
// candidate audits. Rules of protocols judged on the body (graphql operations, json-rpc, mcp,
// sql) cannot be decided from method and target: such a candidate allows nothing here, except
// graphql with access: full and no deny_rules.
RequestDecision decide_request(const ConnectDecision& conn, std::string_view method, std::string_view target);

}  // namespace bulwark::policy
