#pragma once
// Per-client rate limiting of the REST API: one token bucket per remote address. Pure: the time is
// passed in, so the tests need no clock.
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace bulwark::gateway {

using RateClock = std::chrono::steady_clock;

// Holds up to `burst` tokens, refilled at `rate` per second; each request takes one.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, RateClock::time_point now) : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}
  // Takes a token: returns 0 when one was there, else how long until one is (nothing taken).
  std::chrono::milliseconds take(RateClock::time_point now);
  // Full again (as good as a fresh bucket) at this time, if nothing is taken meanwhile.
  bool full_at(RateClock::time_point now) const;

 private:
  void refill(RateClock::time_point now);
  double rate_, burst_, tokens_;
  RateClock::time_point last_;
};

// A bucket per key (the client's address). Thread-safe. rate 0 disables it (every request passes).
class RateLimiter {
 public:
  RateLimiter(double rate, double burst, size_t max_clients = 100000)
      : rate_(rate), burst_(burst < 1 ? 1 : burst), max_clients_(max_clients) {}
  bool enabled() const { return rate_ > 0; }
  // 0: allowed. Else the request is refused and this is how long until a retry can pass.
  std::chrono::milliseconds take(const std::string& key, RateClock::time_point now);
  size_t clients() const;

 private:
  void prune_locked(RateClock::time_point now);
  double rate_, burst_;
  size_t max_clients_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, TokenBucket> buckets_;
  RateClock::time_point next_prune_{};
};

// The Retry-After header value: whole seconds, rounded up, at least 1.
std::string retry_after_seconds(std::chrono::milliseconds wait);

}  // namespace bulwark::gateway
