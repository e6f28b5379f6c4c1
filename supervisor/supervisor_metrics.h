#pragma once
// What the supervisor counts for Prometheus (served on --metrics-listen, off by default;
// docs/observability.md): confinement decisions by layer, the policy version enforced, the
// agent's state and exit code, exec requests.
#include <cstdint>
#include <string>

namespace bulwark::supervisor {

// "allowed", "denied", or "audit" (allowed only because the endpoint is in enforcement: audit).
const char* decision_name(bool allowed, bool audit);

// bulwark_supervisor_decisions_total{layer, decision}: layer proxy, network, dns, landlock, seccomp.
void count_decision(const std::string& layer, const char* decision);
// bulwark_supervisor_policy_version: the version the proxy enforces (0 = the one it started with).
void set_policy_version(uint64_t version);
// bulwark_supervisor_agent_running (0/1), bulwark_supervisor_agent_exit_code (once it ended).
void set_agent_running(bool running);
void set_agent_exit_code(int code);

}  // namespace bulwark::supervisor
