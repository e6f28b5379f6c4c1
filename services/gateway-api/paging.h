#pragma once
// Pagination and filters of the list endpoints (GET /v1/sandboxes, GET /v1/providers). Pure: the
// query parameters in, a filter and a cursor out, every bad value an Error naming its parameter.
//
// A page token is opaque to clients: base64url of the position after which the next page starts,
// and, for sandboxes, a fingerprint of the filter it was made for, so that a token cannot be
// replayed against another filter (which would silently skip or repeat records).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::gateway {

inline constexpr size_t kDefaultPageSize = 100;
inline constexpr size_t kMaxPageSize = 1000;

// ?limit=N: 1..kMaxPageSize; absent = kDefaultPageSize. Error(kInvalidArgument, field "limit").
size_t parse_limit(const std::optional<std::string>& value);

// Which sandboxes GET /v1/sandboxes returns.
struct SandboxFilter {
  bool include_deleted = false;                              // ?all=true
  std::vector<v1::SandboxPhase> phases;                      // ?phase=READY (repeatable: any of them)
  std::vector<std::pair<std::string, std::string>> labels;   // ?label=k=v (repeatable: all of them)
  std::optional<std::string> owner;                          // a ci token's own only (authz.h list_owner)

  bool matches(const v1::Sandbox& s) const;
  // Stable across processes and builds: the same filter always gives the same string.
  std::string fingerprint() const;
};

// ?phase=NAME, an enum name other than PHASE_UNSPECIFIED. Error names field "phase".
v1::SandboxPhase parse_phase(const std::string& name);
// ?label=KEY=VALUE (the value may be empty, the key may not). Error names field "label".
std::pair<std::string, std::string> parse_label(const std::string& selector);
// The filter of ?all=, ?phase= (repeatable) and ?label= (repeatable). A phase filter that names
// DELETED includes deleted records without ?all.
SandboxFilter make_filter(bool all, const std::vector<std::string>& phases, const std::vector<std::string>& labels);

// Where the next page of sandboxes starts: after (created_ms, sandbox_id).
struct SandboxCursor {
  int64_t created_ms = 0;
  std::string sandbox_id;
};
std::string encode_sandbox_token(const SandboxCursor& c, const SandboxFilter& f);
// Error(kInvalidArgument, field "page_token") when malformed or made for another filter.
SandboxCursor decode_sandbox_token(const std::string& token, const SandboxFilter& f);

// Providers are listed by name: the next page starts after this name.
std::string encode_provider_token(const std::string& last_name);
std::string decode_provider_token(const std::string& token);  // Error names field "page_token"

// base64url without padding (RFC 4648 section 5); decode returns nullopt on a bad character.
std::string base64url_encode(const std::string& bytes);
std::optional<std::string> base64url_decode(const std::string& text);

}  // namespace bulwark::gateway
