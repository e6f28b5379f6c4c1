#pragma once
// The sandbox policy file: OpenShell's policy YAML (version 1), parsed and validated so that an
// OpenShell user's policy loads unchanged and a wrong one is refused with every problem at once,
// each at its file:line:column. Pure: no I/O except load_policy_file reading the file.
// The rules, with an example error each: docs/policy-validation.md.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/error.h"

namespace bulwark::policy {

struct FilesystemPolicy {
  bool include_workdir = false;  // add the agent's working directory to read_write
  std::vector<std::string> read_only, read_write;
};

enum class LandlockCompatibility { kBestEffort, kHardRequirement };

// Unset = the compute driver chooses. Set = "sandbox" or a numeric id 1..4294967294, never root.
struct ProcessPolicy {
  std::optional<std::string> run_as_user, run_as_group;
};

// An executable allowed to use a network policy's endpoints; `*` and `**` globs allowed.
struct Binary {
  std::string path;
};

// A matcher: any one of these globs matching is a match. `tag: "v1.*"` reads as {"v1.*"},
// `tag: {any: ["v1.*", "v2.*"]}` as {"v1.*", "v2.*"}.
using Globs = std::vector<std::string>;

// One allow rule (the inside of `- allow: {...}`) or one deny rule. Which fields are set depends
// on the endpoint's protocol; unset strings are empty.
struct Rule {
  std::string method;  // rest/websocket: HTTP method, WEBSOCKET_TEXT or "*"; mcp/json-rpc: RPC method
  std::string path;    // rest/websocket: URL path glob
  std::map<std::string, Globs> query;  // rest/websocket: decoded query param -> matcher
  std::string operation_type, operation_name;  // graphql: query|mutation|subscription|*, name glob
  std::vector<std::string> fields;             // graphql: root-field globs; empty = all
  // mcp: params matchers flattened to dot paths (`tool: x` is params["name"]); only "name" today.
  std::map<std::string, Globs> params;
  std::string command;  // sql (accepted loosely, not yet enforced)
};

struct GraphqlOperation {
  std::string operation_type, operation_name;
  std::vector<std::string> fields;
};

struct McpOptions {
  bool strict_tool_names = true;
  bool allow_all_known_mcp_methods = false;
};

struct Endpoint {
  std::string host;             // may be empty only for a hostless allowed_ips endpoint
  std::vector<uint16_t> ports;  // from `port` or `ports`; never empty
  std::string path;             // HTTP path glob selecting between L7 endpoints; empty = all
  std::string protocol;         // lowercased; "" (L4 via the proxy), tcp, rest, websocket, graphql, sql, json-rpc, mcp
  std::string tls;              // "" (auto-detect), skip; terminate|passthrough accepted, no effect
  std::string enforcement;      // "", enforce, audit
  std::string access;           // "", read-only, read-write, full
  std::vector<Rule> rules, deny_rules;
  std::vector<std::string> allowed_ips;  // IPs or CIDRs
  bool allow_encoded_slash = false;
  bool websocket_credential_rewrite = false;
  bool request_body_credential_rewrite = false;
  bool allow_uninspected_credentials = false;
  std::string credential_signing;  // "", sigv4, sigv4:body, sigv4:no_body
  std::string signing_service, signing_region;
  std::string credential_binding_provider;  // credential_binding.provider
  std::string persisted_queries;            // "" (deny), deny, allow_registered
  std::map<std::string, GraphqlOperation> graphql_persisted_queries;
  uint32_t graphql_max_body_bytes = 0;  // 0 = default (65536)
  uint32_t json_rpc_max_body_bytes = 0;  // mcp.max_body_bytes or json_rpc.max_body_bytes; 0 = default
  McpOptions mcp;
};

struct NetworkPolicy {
  std::string key;   // the map key: the stable identity
  std::string name;  // display name; the key when not given
  std::vector<Endpoint> endpoints;
  std::vector<Binary> binaries;
};

// network_middlewares: accepted and checked for shape; Bulwark does not run middleware yet.
struct Middleware {
  std::string key, name, middleware;
  int32_t order = 0;
  std::string on_error = "fail_closed";  // or fail_open
  std::vector<std::string> include, exclude;
  std::string config_json;  // the implementation-owned `config` object as JSON; "" when absent
};

struct Policy {
  int version = 1;
  FilesystemPolicy filesystem;
  bool has_filesystem = false;  // filesystem_policy was given
  LandlockCompatibility landlock = LandlockCompatibility::kBestEffort;
  ProcessPolicy process;
  std::vector<NetworkPolicy> network_policies;  // in file order
  std::vector<Middleware> network_middlewares;  // in file order
};

// One thing wrong with a policy file. line and column are 1-based.
struct Problem {
  std::string file;
  int line = 0, column = 0;
  std::string path;  // e.g. filesystem_policy.read_write[2]; empty for YAML syntax errors
  std::string message;
  // "p.yaml:7:7: filesystem_policy.read_write[2]: must be an absolute path"
  std::string to_string() const;
};

// Every problem found in one policy. what() lists them one per line; field() is the first's path.
class PolicyInvalid : public Error {
 public:
  explicit PolicyInvalid(std::vector<Problem> problems);
  std::vector<Problem> problems;
};

// Parses and validates a policy. Throws PolicyInvalid listing all problems found (YAML syntax
// errors stop parsing, so they come alone). filename only labels the problems.
Policy parse_policy(const std::string& yaml_text, const std::string& filename);

// filesystem_policy, landlock, process: applied once, before the agent starts, so a live sandbox
// keeps those it started with. Returns the sections of next that differ from live, compared by
// meaning (path order, absent landlock = best_effort); empty when none.
std::vector<std::string> changed_static_sections(const Policy& live, const Policy& next);

// Reads path and parses it. An unreadable file is an Error (kInvalidArgument) naming the file
// and the reason; a bad policy is PolicyInvalid.
Policy load_policy_file(const std::string& path);

}  // namespace bulwark::policy
