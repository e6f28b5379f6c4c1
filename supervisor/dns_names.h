#pragma once
// What the sandbox's DNS answered, kept so the egress proxy can map a transparent connection's
// original destination address back to the name the agent looked up. A connection that carries
// no name of its own (protocol: tcp, a client without SNI or Host) to an endpoint named by host
// is then attributed to that host, including wildcard hosts. The answer was the supervisor's own
// lookup, so no second lookup is needed (nor could one disagree with it).
//
// Bounded: at most max_entries (address, name) pairs, the least recently answered dropped first,
// and each forgotten `retain` after its last answer (clients keep addresses past the DNS TTL).
// Thread-safe: the DNS thread records, the proxy's event loop reads.
#include <chrono>
#include <cstddef>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <asio/ip/address.hpp>

namespace bulwark::supervisor {

class DnsNames {
 public:
  using Clock = std::chrono::steady_clock;
  explicit DnsNames(size_t max_entries = 4096, std::chrono::seconds retain = std::chrono::minutes(10));

  // The responder answered `name` with `addrs` (IPv4-mapped IPv6 addresses are stored as IPv4).
  void record(const std::string& name, const std::vector<asio::ip::address>& addrs, Clock::time_point now = Clock::now());
  // The names answered with this address and not yet forgotten, most recently answered first.
  std::vector<std::string> names_for(const asio::ip::address& addr, Clock::time_point now = Clock::now()) const;
  size_t size() const;

 private:
  struct Entry {
    std::string addr, name;
    Clock::time_point last;
  };
  const size_t max_;
  const std::chrono::seconds retain_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // oldest answer first
  std::map<std::pair<std::string, std::string>, std::list<Entry>::iterator> index_;
};

}  // namespace bulwark::supervisor
