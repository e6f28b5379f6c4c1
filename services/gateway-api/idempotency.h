#pragma once
// Idempotency-Key on the POSTs that create something (POST /v1/sandboxes, POST /v1/providers): a
// CI job that retries a create after a lost answer gets the first answer again, status and body,
// instead of a second sandbox. The pure parts are here; the records live in Store.
#include <array>
#include <mutex>
#include <optional>
#include <string>

namespace bulwark::gateway {

inline constexpr const char* kIdempotencyHeader = "Idempotency-Key";
// How long a key is remembered. A sandbox keeps its key for good (Store::insert): after this, a
// retry with the key finds that sandbox as it is now.
inline constexpr int64_t kIdempotencyTtlMs = 24 * 3600 * 1000;

// 1 to 255 visible ASCII characters (a UUID, a CI job id). Error(kInvalidArgument, field
// "Idempotency-Key") otherwise.
void check_idempotency_key(const std::string& key);

// What identifies a request's body: SHA-256 (hex) of its JSON in one canonical form (keys sorted,
// no whitespace), so that a retry that re-serialises the same object still matches. A body that is
// not JSON is hashed as is.
std::string request_fingerprint(const std::string& body);

enum class IdempotencyDecision {
  kRun,       // the key is new: run the request, and remember its answer if it succeeded
  kReplay,    // the same request was answered before: send that answer again
  kConflict,  // the key was used for another request: refuse (409, field Idempotency-Key)
};
IdempotencyDecision decide_idempotency(const std::optional<std::string>& stored_fingerprint, const std::string& fingerprint);

// One request per key at a time, so that two concurrent retries cannot both run: a fixed set of
// mutexes, picked by a hash of the scope and key.
class KeyLocks {
 public:
  std::mutex& of(const std::string& scope, const std::string& key);

 private:
  std::array<std::mutex, 64> mu_;
};

}  // namespace bulwark::gateway
