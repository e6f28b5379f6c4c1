#include "supervisor/dns_names.h"

#include <algorithm>

namespace bulwark::supervisor {
namespace {
std::string key_of(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}
}  // namespace

DnsNames::DnsNames(size_t max_entries, std::chrono::seconds retain) : max_(std::max<size_t>(max_entries, 1)), retain_(retain) {}

void DnsNames::record(const std::string& name, const std::vector<asio::ip::address>& addrs, Clock::time_point now) {
  std::lock_guard lock(mu_);
  for (const auto& a : addrs) {
    auto key = std::make_pair(key_of(a), name);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.erase(it->second);
      index_.erase(it);
    }
    lru_.push_back({key.first, name, now});
    index_[key] = std::prev(lru_.end());
    while (lru_.size() > max_) {
      index_.erase({lru_.front().addr, lru_.front().name});
      lru_.pop_front();
    }
  }
}

std::vector<std::string> DnsNames::names_for(const asio::ip::address& addr, Clock::time_point now) const {
  const std::string k = key_of(addr);
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  // Newest first: the name the agent looked up last is the likeliest one it is connecting to.
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it)
    if (it->addr == k && now - it->last <= retain_) out.push_back(it->name);
  return out;
}

size_t DnsNames::size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

}  // namespace bulwark::supervisor
