#include "services/gateway-api/tokens.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/error.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {
constexpr std::string_view kPrefix = "bwk_";
constexpr size_t kIdHex = 12, kSecretHex = 64;

std::string to_hex(const unsigned char* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += d[p[i] >> 4];
    out += d[p[i] & 15];
  }
  return out;
}

std::string random_token_hex(size_t bytes) {
  std::vector<unsigned char> b(bytes);
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) throw Error(Code::kInternal, "OpenSSL RAND_bytes failed");
  return to_hex(b.data(), b.size());
}

bool lower_hex(std::string_view s, size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

google::protobuf::Timestamp from_millis(int64_t ms) {
  google::protobuf::Timestamp t;
  t.set_seconds(ms / 1000);
  t.set_nanos(static_cast<int32_t>((ms % 1000) * 1'000'000));
  return t;
}

std::string iso(int64_t ms) {
  time_t s = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&s, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Error unauthenticated(const std::string& why) {
  return Error(Code::kUnauthenticated,
               why + "; send Authorization: Bearer <token> (the first admin token is in admin.token beside the gateway's "
                     "database; `bulwark token create` makes more)");
}
}  // namespace

std::optional<TokenParts> parse_token(std::string_view text) {
  if (!text.starts_with(kPrefix)) return std::nullopt;
  text.remove_prefix(kPrefix.size());
  size_t us = text.find('_');
  if (us == std::string_view::npos) return std::nullopt;
  auto id = text.substr(0, us), secret = text.substr(us + 1);
  if (!lower_hex(id, kIdHex) || !lower_hex(secret, kSecretHex)) return std::nullopt;
  return TokenParts{std::string(id), std::string(secret)};
}

std::string hash_secret(std::string_view secret) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), md);
  return to_hex(md, sizeof md);
}

void check_token_name(const std::string& name) {
  if (name.empty() || name.size() > 64 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos)
    throw Error(Code::kInvalidArgument, "name: 1 to 64 letters, digits, '.', '_' or '-', got '" + name + "'", "name");
}

std::string token_unusable(const TokenRow& row, int64_t now_ms) {
  if (row.revoked_ms != 0) return "token " + row.token_id + " was revoked at " + iso(row.revoked_ms);
  if (row.expires_ms != 0 && now_ms >= row.expires_ms) return "token " + row.token_id + " expired at " + iso(row.expires_ms);
  return "";
}

v1::Token token_json(const TokenRow& row) {
  v1::Token t;
  t.set_token_id(row.token_id);
  t.set_name(row.name);
  t.set_scope(row.scope);
  *t.mutable_created_at() = from_millis(row.created_ms);
  if (row.expires_ms) *t.mutable_expires_at() = from_millis(row.expires_ms);
  if (row.revoked_ms) *t.mutable_revoked_at() = from_millis(row.revoked_ms);
  if (row.last_used_ms) *t.mutable_last_used_at() = from_millis(row.last_used_ms);
  t.set_created_by(row.created_by);
  return t;
}

v1::Token Tokens::create(const v1::CreateTokenRequest& req, const std::string& created_by) {
  check_token_name(req.name());
  if (!parse_scope(req.scope()))
    throw Error(Code::kInvalidArgument, "scope: one of " + std::string(kScopeNames) + ", got '" + req.scope() + "'", "scope");
  if (req.expires_in_s() < 0 || req.expires_in_s() > kMaxTokenLifetimeS)
    throw Error(Code::kInvalidArgument,
                "expires_in_s: 0 (never) to " + std::to_string(kMaxTokenLifetimeS) + " seconds, got " + std::to_string(req.expires_in_s()),
                "expires_in_s");
  int64_t now = to_millis(now_timestamp());
  TokenRow row{random_token_hex(kIdHex / 2), req.name(), req.scope(), "", now, 0, 0, 0, created_by};
  if (req.expires_in_s() > 0) row.expires_ms = now + req.expires_in_s() * 1000;
  std::string secret = random_token_hex(kSecretHex / 2);
  row.secret_sha256 = hash_secret(secret);
  store_.insert_token(row);  // a collision of 48 random bits throws already_exists; the client retries
  auto t = token_json(row);
  t.set_token(std::string(kPrefix) + row.token_id + "_" + secret);
  return t;
}

TokenRow Tokens::revoke(const std::string& token_id) {
  int64_t now = to_millis(now_timestamp());
  auto row = store_.find_token(token_id);
  if (!row) throw Error(Code::kNotFound, "no token with token_id '" + token_id + "'; `bulwark token list` shows them", "token_id");
  // Without a usable admin token nobody could make or revoke tokens again (short of wiping the table).
  if (row->scope == "admin" && token_unusable(*row, now).empty()) {
    size_t admins = 0;
    for (const auto& t : store_.list_tokens()) admins += t.scope == "admin" && token_unusable(t, now).empty();
    if (admins <= 1)
      throw Error(Code::kFailedPrecondition,
                  "token " + token_id + " is the last usable admin token: create another admin token first, then revoke this one",
                  "token_id");
  }
  row = store_.revoke_token(token_id, now);
  if (!row) throw Error(Code::kNotFound, "no token with token_id '" + token_id + "'", "token_id");
  return *row;
}

Caller Tokens::authenticate(const std::string& authorization, int64_t now_ms) {
  if (authorization.empty()) throw unauthenticated("no Authorization header");
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() || strncasecmp(authorization.c_str(), kBearer.data(), kBearer.size()) != 0)
    throw unauthenticated("the Authorization header is not 'Bearer <token>'");
  std::string_view text(authorization);
  text.remove_prefix(kBearer.size());
  auto parts = parse_token(text);
  if (!parts) throw unauthenticated("the bearer token is not a Bulwark API token (bwk_<token_id>_<secret>)");
  auto row = store_.find_token(parts->token_id);
  std::string hash = hash_secret(parts->secret);
  // Constant time: the comparison does not tell an attacker how much of a guess was right.
  if (!row || row->secret_sha256.size() != hash.size() || CRYPTO_memcmp(row->secret_sha256.data(), hash.data(), hash.size()) != 0)
    throw unauthenticated("unknown token");
  if (auto why = token_unusable(*row, now_ms); !why.empty()) throw unauthenticated(why);
  if (now_ms - row->last_used_ms >= kTouchEveryMs) store_.touch_token(row->token_id, now_ms);
  return Caller{row->token_id, row->name, *parse_scope(row->scope)};
}

bool Tokens::bootstrap(const std::string& path) {
  if (store_.count_tokens() > 0) return false;
  v1::CreateTokenRequest req;
  req.set_name("bootstrap-admin");
  req.set_scope("admin");
  auto t = create(req, "bootstrap");
  // A stale file from an earlier database is replaced: written beside it, then renamed over it.
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw Error(Code::kFailedPrecondition, errno_text("cannot write the bootstrap admin token: open(" + tmp + ")", errno) +
                                                      "; set --bootstrap-token-file to a writable place");
  std::string text = t.token() + "\n";
  if (::fchmod(fd.get(), 0600) != 0 || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(Code::kFailedPrecondition, errno_text("cannot write the bootstrap admin token to " + path, err));
  }
  spdlog::warn("no API token existed: created admin token {} and wrote it to {} (mode 0600); use it to create scoped tokens "
               "(`bulwark token create`), then keep it safe or revoke it",
               t.token_id(), path);
  return true;
}

std::string default_admin_token_file(const std::string& db_path) {
  auto slash = db_path.rfind('/');
  return (slash == std::string::npos ? std::string(".") : db_path.substr(0, slash)) + "/admin.token";
}

}  // namespace bulwark::gateway
