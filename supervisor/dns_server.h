#pragma once
// The sandbox's DNS responder (transparent egress): UDP and TCP on the supervisor's veth address,
// named by the agent's /etc/resolv.conf. It answers A/AAAA only for names some network policy
// rule names (exact or wildcard, CompiledPolicy::names_host), by looking them up on the
// supervisor's side, and inference.local with the supervisor's own address; every other name
// gets NXDOMAIN without being looked up anywhere, so queries cannot carry data out. The policy
// is swapped live like the proxy's. One thread; a lookup blocks it (short TTLs, few names).
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "shared/process.h"
#include "supervisor/dns_names.h"

namespace bulwark::policy {
class CompiledPolicy;
}

namespace bulwark::supervisor {

class DnsResponder {
 public:
  struct Options {
    uint32_t listen_addr_be = 0;
    uint16_t port = 53;  // 0 picks a free one (tests)
    uint32_t ttl = 30;   // short: a policy change reaches cached answers quickly
    // Each refused name (already rate-limited to about 20 a second), from the responder's thread.
    std::function<void(const std::string& name, uint16_t qtype)> on_refused;
    // Where each A answer is recorded (name -> addresses), for the proxy to attribute nameless
    // transparent connections by address (dns_names.h). Optional.
    std::shared_ptr<DnsNames> names;
  };
  // Binds both sockets and starts the thread; throws Error naming the address on failure.
  DnsResponder(Options o, std::shared_ptr<const policy::CompiledPolicy> policy);
  ~DnsResponder();
  DnsResponder(const DnsResponder&) = delete;
  DnsResponder& operator=(const DnsResponder&) = delete;

  void set_policy(std::shared_ptr<const policy::CompiledPolicy> policy);
  uint16_t port() const { return port_; }
  // The answer to one message ("" = drop it). Public for tests.
  std::string answer(std::string_view msg);

 private:
  void loop();
  void serve_tcp(int fd);
  Options o_;
  std::mutex mu_;
  std::shared_ptr<const policy::CompiledPolicy> policy_;
  Fd udp_, tcp_, stop_[2];
  uint16_t port_ = 0;
  std::chrono::steady_clock::time_point window_{};
  int refused_in_window_ = 0;
  std::thread thread_;
};

}  // namespace bulwark::supervisor
