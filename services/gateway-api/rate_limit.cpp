#include "services/gateway-api/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace bulwark::gateway {

void TokenBucket::refill(RateClock::time_point now) {
  if (now <= last_) return;
  double elapsed = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
  last_ = now;
}

std::chrono::milliseconds TokenBucket::take(RateClock::time_point now) {
  refill(now);
  // The epsilon absorbs floating-point dust: 10 x 0.1 s of refill is one whole token.
  if (tokens_ >= 1 - 1e-9) {
    tokens_ -= 1;
    return std::chrono::milliseconds(0);
  }
  // At least 1 ms, so that 0 keeps meaning "allowed".
  double wait_ms = std::ceil((1 - tokens_) / rate_ * 1000 - 1e-6);
  return std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(wait_ms)));
}

bool TokenBucket::full_at(RateClock::time_point now) const {
  double elapsed = now > last_ ? std::chrono::duration<double>(now - last_).count() : 0;
  return tokens_ + elapsed * rate_ >= burst_ - 1e-9;
}

std::chrono::milliseconds RateLimiter::take(const std::string& key, RateClock::time_point now) {
  if (!enabled()) return std::chrono::milliseconds(0);
  std::lock_guard lock(mu_);
  if (now >= next_prune_ || buckets_.size() >= max_clients_) prune_locked(now);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    // Under a flood of distinct addresses the table stays bounded; a new client then gets a fresh
    // bucket each time, which is what it would have had anyway.
    if (buckets_.size() >= max_clients_) return TokenBucket(rate_, burst_, now).take(now);
    it = buckets_.emplace(key, TokenBucket(rate_, burst_, now)).first;
  }
  return it->second.take(now);
}

void RateLimiter::prune_locked(RateClock::time_point now) {
  // A full bucket is the same as no bucket: drop it, so idle clients cost nothing.
  std::erase_if(buckets_, [&](const auto& kv) { return kv.second.full_at(now); });
  next_prune_ = now + std::chrono::seconds(10);
}

size_t RateLimiter::clients() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

std::string retry_after_seconds(std::chrono::milliseconds wait) {
  return std::to_string(std::max<int64_t>(1, (wait.count() + 999) / 1000));
}

}  // namespace bulwark::gateway
