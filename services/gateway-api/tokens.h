#pragma once
// API tokens of the REST API: bwk_<token_id>_<secret>. token_id is public (lists, audit log); the
// secret is 32 random bytes (OpenSSL RAND_bytes) shown once, at creation, and stored only as its
// SHA-256 (an HMAC or a slow hash would add nothing for 256 random bits). Every request looks the
// token up in SQLite, so a revocation or an expiry takes effect on the very next request.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/v1/auth.pb.h"
#include "services/gateway-api/authz.h"
#include "services/gateway-api/store.h"

namespace bulwark::gateway {

// The parts of "bwk_<token_id>_<secret>". Pure; nullopt when the text is not in that form.
struct TokenParts {
  std::string token_id;  // 12 lowercase hex digits
  std::string secret;    // 64 lowercase hex digits
};
std::optional<TokenParts> parse_token(std::string_view text);
// SHA-256 of the secret, lowercase hex.
std::string hash_secret(std::string_view secret);
// A token name: 1-64 of [A-Za-z0-9._-]. Throws Error(kInvalidArgument, field "name").
void check_token_name(const std::string& name);
// "" when row may be used at now_ms, else why not ("revoked at ...", "expired at ...").
std::string token_unusable(const TokenRow& row, int64_t now_ms);
// The REST form: no secret, no hash.
v1::Token token_json(const TokenRow& row);

// Longest expires_in_s accepted: ten years. Longer is a mistake; 0 is "never".
inline constexpr int64_t kMaxTokenLifetimeS = 10LL * 365 * 24 * 3600;
// last_used_at is written at most this often per token: a write per request would cost more than
// the lookup itself.
inline constexpr int64_t kTouchEveryMs = 60'000;

class Tokens {
 public:
  explicit Tokens(Store& store) : store_(store) {}

  // The reply carries the whole token in `token`; nothing else ever does. Errors name the field.
  v1::Token create(const v1::CreateTokenRequest& req, const std::string& created_by);
  std::vector<TokenRow> list() { return store_.list_tokens(); }
  // Error(kNotFound, field token_id) when there is no such token. Revoking twice keeps the first time.
  TokenRow revoke(const std::string& token_id);
  // The caller of an Authorization header value. Error(kUnauthenticated) saying what is wrong.
  Caller authenticate(const std::string& authorization, int64_t now_ms);

  // First start (no token at all): creates an admin token and writes it to `path` (mode 0600,
  // replacing a stale file). Returns whether it did. Never logs the token.
  bool bootstrap(const std::string& path);

 private:
  Store& store_;
};

// Where the first admin token goes by default: admin.token in the directory of the database file.
std::string default_admin_token_file(const std::string& db_path);

}  // namespace bulwark::gateway
