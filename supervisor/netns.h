#pragma once
// The agent's network: its own network namespace joined to the supervisor's by a veth pair, with
// one /30 between them. The supervisor's end carries the egress proxy; the agent's namespace has
// no default route and a firewall (firewall.h) that rejects everything but the proxy.
// Links and addresses are set with rtnetlink directly: no `ip` binary is needed in the image.
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace bulwark::supervisor {

struct VethPlan {
  std::string host_if;   // supervisor side, e.g. "bw1a2b3c4d5e-h" (at most 15 chars)
  std::string agent_if;  // inside the agent namespace: "eth0"
  uint32_t host_addr;    // network byte order
  uint32_t agent_addr;
  int prefix = 30;
};

// Picks a /30 in 10.200.0.0/16 that no interface of this namespace uses yet, starting from a hash
// of the sandbox id (so concurrent supervisors rarely race), and names the host side after it.
VethPlan plan_veth(const std::string& sandbox_id);

// In the supervisor's namespace: creates the pair with the peer inside the network namespace of
// agent_pid, addresses and raises the supervisor's side. Throws Error naming the step and errno.
void create_veth(const VethPlan& plan, pid_t agent_pid);
// Inside the agent's namespace (the agent child, still privileged): raises lo, addresses and
// raises the agent's side. No default route: nothing outside the /30 is routable.
void configure_agent_side(const VethPlan& plan);
// Removes the supervisor's side (and so the pair), ignoring "no such device".
void delete_veth(const std::string& host_if);

std::string ip_to_string(uint32_t addr_be);

}  // namespace bulwark::supervisor
