#pragma once
// The agent namespace's firewall (nftables, through libnftables: no `nft` binary needed in the
// image). Everything leaving the agent is rejected and logged, except TCP to the supervisor's
// egress proxy and the agent's own loopback, and (transparent egress, the default) TCP anywhere,
// which the supervisor's side redirects to the proxy, and DNS to the supervisor. What is refused
// gets a TCP reset / ICMP unreachable, not a leak, and the supervisor hears about it (nflog).
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "shared/process.h"

namespace bulwark::supervisor {

inline constexpr int kDenyLogGroup = 7;  // nflog group the rules log to
// The supervisor's ports that serve inference.local to clients ignoring the proxy settings
// (transparent egress; nftables set syntax).
inline constexpr const char* kInferencePorts = "80, 443";

// The nftables ruleset text (pure; tested) and its application inside the current namespace.
// transparent: TCP to any address but the supervisor's is let out too (the supervisor's side
// redirects it to the proxy, TransparentRedirect), and DNS to the supervisor's responder.
std::string agent_ruleset(uint32_t proxy_addr_be, uint16_t proxy_port, int log_group, bool transparent = false);
void apply_agent_firewall(uint32_t proxy_addr_be, uint16_t proxy_port, bool transparent = false);

// Transparent egress, in the supervisor's namespace: every TCP connection arriving from the
// agent's veth for an address other than the supervisor's own is redirected (nat prerouting) to
// the proxy's transparent port, where SO_ORIGINAL_DST still tells where it was going; and nothing
// from that veth is ever forwarded (were the redirect missing, the host must not route the
// agent's packets). Pure text (tested), then the RAII owner of the table.
std::string supervisor_redirect_ruleset(const std::string& table, const std::string& host_if, uint32_t host_addr_be,
                                        uint16_t transparent_port);
class TransparentRedirect {
 public:
  // Installs the table (replacing a stale one of the same name); throws Error with nft's message.
  TransparentRedirect(const std::string& host_if, uint32_t host_addr_be, uint16_t transparent_port);
  ~TransparentRedirect();  // deletes the table
  TransparentRedirect(const TransparentRedirect&) = delete;
  TransparentRedirect& operator=(const TransparentRedirect&) = delete;

 private:
  std::string table_;
};
// A route for everything via the supervisor's side, so that packets to any address reach the
// firewall (and are logged) instead of failing silently with "network unreachable".
void add_default_route(uint32_t via_be);
// Turns IPv6 off in this namespace: the agent gets no link-local path around the rules above.
void disable_ipv6();

struct Denial {
  std::string protocol;  // "tcp", "udp", "icmp", ...
  std::string destination;
  uint16_t port = 0;
};

// Reads the firewall's nflog group inside the network namespace of pid and calls on_denial for
// every rejected packet, from its own thread, until destroyed.
class DenialLog {
 public:
  DenialLog(pid_t netns_pid, std::function<void(const Denial&)> on_denial);
  ~DenialLog();
  DenialLog(const DenialLog&) = delete;
  DenialLog& operator=(const DenialLog&) = delete;

 private:
  void loop();
  Fd sock_;
  Fd stop_[2];
  std::function<void(const Denial&)> on_denial_;
  std::thread thread_;
};

}  // namespace bulwark::supervisor
