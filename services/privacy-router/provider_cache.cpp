#include "services/privacy-router/provider_cache.h"

namespace bulwark::privacy_router {

ProviderCache::ProviderCache(Fetch fetch, std::chrono::milliseconds ttl, std::function<Clock::time_point()> now)
    : fetch_(std::move(fetch)), ttl_(ttl), now_(std::move(now)) {}

v1::Provider ProviderCache::get(const std::string& name) {
  uint64_t gen = 0;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end() && now_() - it->second.fetched < ttl_) return it->second.provider;
    gen = generation_;
  }
  // Outside the lock: a slow gateway must not hold up calls whose providers are cached.
  v1::Provider p = fetch_(name);
  std::lock_guard lock(mu_);
  if (generation_ == gen) entries_[name] = Entry{p, now_()};
  return p;
}

void ProviderCache::invalidate(const std::string& name) {
  std::lock_guard lock(mu_);
  ++generation_;
  if (name.empty())
    entries_.clear();
  else
    entries_.erase(name);
}

}  // namespace bulwark::privacy_router
