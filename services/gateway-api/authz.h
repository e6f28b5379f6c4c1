#pragma once
// Who may call what: the scopes of API tokens and the ownership of sandboxes, as one pure decision
// per request (no store, no socket). The table of what each scope may do is docs/security.md's.
//
//   admin     everything, including /v1/tokens and /v1/audit
//   operator  sandboxes (any owner), policies, providers, inference routes; not tokens, not audit
//   ci        create sandboxes; read, change (policy), exec, delete the sandboxes IT created;
//             GET providers (masked) and status; nothing else that changes anything
//   read-only GET only (provider credentials are masked for everyone anyway); not tokens, not audit
//
// Another owner's sandbox is answered 404 not_found, the same as a sandbox that does not exist, so a
// ci token cannot learn which sandbox ids or names other jobs use.
#include <optional>
#include <string>
#include <string_view>

#include "shared/error.h"

namespace bulwark::gateway {

enum class Scope { kAdmin, kOperator, kCi, kReadOnly };

const char* scope_name(Scope s);  // "admin", "operator", "ci", "read-only"
std::optional<Scope> parse_scope(std::string_view name);
inline constexpr const char* kScopeNames = "admin, operator, ci, read-only";

// The token a request came with.
struct Caller {
  std::string token_id;
  std::string name;
  Scope scope = Scope::kReadOnly;
};

struct Decision {
  bool allowed = false;
  Code code = Code::kPermissionDenied;  // kPermissionDenied, or kNotFound for another owner's sandbox
  std::string reason;                   // for the error body: what was refused and which scope would do
};

// method: GET, POST, ...; route: the route template (/v1/sandboxes/{sandbox_id}/policy); owner: the
// owner (token_id) of the sandbox the route names, when it names one that exists. ref: how the
// request named that sandbox (for the not-found message).
Decision authorize(const Caller& c, const std::string& method, const std::string& route,
                   const std::optional<std::string>& owner = std::nullopt, const std::string& ref = {});

// The owner GET /v1/sandboxes is limited to: the caller's own token_id for ci, nullopt (all) else.
std::optional<std::string> list_owner(const Caller& c);

// POST, PUT, PATCH, DELETE: what the audit log records.
bool is_mutating(const std::string& method);

// True for routes that name one sandbox by {sandbox_id}: the owner is looked up before authorize.
bool names_sandbox(const std::string& route);

}  // namespace bulwark::gateway
