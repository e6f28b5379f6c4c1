#include "services/gateway-api/idempotency.h"

#include <openssl/evp.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "shared/error.h"

namespace bulwark::gateway {

void check_idempotency_key(const std::string& key) {
  bool visible = true;
  for (unsigned char c : key) visible = visible && c > 0x20 && c < 0x7f;
  if (key.empty() || key.size() > 255 || !visible)
    throw Error(Code::kInvalidArgument,
                std::string(kIdempotencyHeader) + ": must be 1 to 255 visible ASCII characters (e.g. a UUID or a CI job id)",
                kIdempotencyHeader);
}

std::string request_fingerprint(const std::string& body) {
  auto j = nlohmann::json::parse(body.empty() ? "{}" : body, nullptr, false);
  // nlohmann's objects are sorted maps: dump() is canonical.
  std::string canonical = j.is_discarded() ? body : j.dump();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(canonical.data(), canonical.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error(Code::kInternal, "OpenSSL EVP_Digest(sha256) failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

IdempotencyDecision decide_idempotency(const std::optional<std::string>& stored, const std::string& fingerprint) {
  if (!stored) return IdempotencyDecision::kRun;
  return *stored == fingerprint ? IdempotencyDecision::kReplay : IdempotencyDecision::kConflict;
}

std::mutex& KeyLocks::of(const std::string& scope, const std::string& key) {
  return mu_[std::hash<std::string>()(scope + '\n' + key) % mu_.size()];
}

}  // namespace bulwark::gateway
