#include "services/gateway-api/authz.h"

namespace bulwark::gateway {

const char* scope_name(Scope s) {
  switch (s) {
    case Scope::kAdmin: return "admin";
    case Scope::kOperator: return "operator";
    case Scope::kCi: return "ci";
    case Scope::kReadOnly: return "read-only";
  }
  return "read-only";
}

std::optional<Scope> parse_scope(std::string_view name) {
  for (Scope s : {Scope::kAdmin, Scope::kOperator, Scope::kCi, Scope::kReadOnly})
    if (name == scope_name(s)) return s;
  return std::nullopt;
}

bool is_mutating(const std::string& method) { return method != "GET" && method != "HEAD" && method != "OPTIONS"; }

namespace {
constexpr std::string_view kSandboxRoute = "/v1/sandboxes/{sandbox_id}";

bool under(const std::string& route, std::string_view prefix) {
  return route == prefix || (route.starts_with(prefix) && route.size() > prefix.size() && route[prefix.size()] == '/');
}

Decision allow() { return {true, Code::kPermissionDenied, {}}; }

Decision deny(const Caller& c, const std::string& method, const std::string& route, const std::string& needs) {
  return {false, Code::kPermissionDenied,
          "token '" + c.name + "' has scope " + scope_name(c.scope) + ", which may not " + method + " " + route + "; it needs " +
              needs};
}
}  // namespace

bool names_sandbox(const std::string& route) { return under(route, kSandboxRoute); }

Decision authorize(const Caller& c, const std::string& method, const std::string& route, const std::optional<std::string>& owner,
                   const std::string& ref) {
  if (c.scope == Scope::kAdmin) return allow();
  const bool read = !is_mutating(method);

  // Tokens and the audit log are the keys to everything else: admin only.
  if (under(route, "/v1/tokens") || under(route, "/v1/audit")) return deny(c, method, route, "scope admin");

  // Answers about the gateway itself, and a check that changes nothing.
  if (route == "/v1/status" || route == "/v1/policies/validate") return allow();

  // Watching phase changes and denials: every scope may; a ci token's stream carries its own
  // sandboxes' events only (list_owner).
  if (route == "/v1/events") return read ? allow() : deny(c, method, route, "GET only");

  // Proposed rules from any sandbox's denials, and approving them (which widens a policy):
  // operators only, reading included (a proposal names hosts and binaries of another's job).
  if (under(route, "/v1/policies")) {
    if (c.scope == Scope::kOperator) return allow();
    return deny(c, method, route, "scope operator or admin");
  }

  if (under(route, "/v1/sandboxes")) {
    if (c.scope == Scope::kOperator) return allow();
    if (c.scope == Scope::kReadOnly) return read ? allow() : deny(c, method, route, "scope ci (its own sandboxes), operator or admin");
    // ci: creates and lists (the list is filtered to its own, see list_owner); any operation on
    // a sandbox it owns, including newer per-sandbox routes (exec, files, stop/start).
    if (route == "/v1/sandboxes") return allow();
    if (names_sandbox(route)) {
      if (owner && *owner != c.token_id)
        return {false, Code::kNotFound, "no sandbox with id or name '" + ref + "'"};
      return allow();
    }
    return deny(c, method, route, "scope operator or admin");
  }

  if (under(route, "/v1/providers") || under(route, "/v1/inference")) {
    if (c.scope == Scope::kOperator) return allow();
    // Provider answers are masked for every scope; a ci job reads them to attach providers. Inference
    // route tables may name other jobs' sandboxes: operators only.
    if (read && (c.scope == Scope::kReadOnly || under(route, "/v1/providers"))) return allow();
    return deny(c, method, route, read ? "scope read-only, operator or admin" : "scope operator or admin");
  }

  // A route this table does not know yet: only admin, until someone decides.
  return deny(c, method, route, "scope admin (no other scope is granted this route)");
}

std::optional<std::string> list_owner(const Caller& c) {
  if (c.scope == Scope::kCi) return c.token_id;
  return std::nullopt;
}

}  // namespace bulwark::gateway
