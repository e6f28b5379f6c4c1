#pragma once
// Providers with clear credentials, asked of gateway-api (bulwark.provider.resolve) and kept in
// memory only, for a TTL, so that a call does not wait on the gateway each time and a gateway
// restart does not stop inference at once. bulwark.provider.changed drops an entry. The fetch is
// injected so the cache is testable without NATS.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "bulwark/v1/inference.pb.h"

namespace bulwark::privacy_router {

class ProviderCache {
 public:
  using Clock = std::chrono::steady_clock;
  // Throws bulwark::Error saying why the provider cannot be had.
  using Fetch = std::function<v1::Provider(const std::string& name)>;

  ProviderCache(Fetch fetch, std::chrono::milliseconds ttl, std::function<Clock::time_point()> now = Clock::now);

  // The cached provider within the TTL, else a fresh fetch (cached on success). Throws what the
  // fetch throws when there is no fresh entry.
  v1::Provider get(const std::string& name);
  // Drops the provider ("" = every provider); a fetch that was running keeps its answer to itself.
  void invalidate(const std::string& name);

 private:
  struct Entry {
    v1::Provider provider;
    Clock::time_point fetched;
  };
  Fetch fetch_;
  std::chrono::milliseconds ttl_;
  std::function<Clock::time_point()> now_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
  uint64_t generation_ = 0;  // bumped by invalidate: an older fetch must not store a stale value
};

}  // namespace bulwark::privacy_router
