#include "supervisor/supervisor_metrics.h"

#include "shared/metrics.h"

namespace bulwark::supervisor {

namespace {
metrics::Registry& r() { return metrics::registry(); }
}  // namespace

const char* decision_name(bool allowed, bool audit) {
  if (audit) return "audit";
  return allowed ? "allowed" : "denied";
}

void count_decision(const std::string& layer, const char* decision) {
  static auto& f = r().counter("bulwark_supervisor_decisions_total",
                               "Confinement decisions in this sandbox, by layer (proxy, network, dns, landlock, seccomp) "
                               "and decision (allowed, denied, audit).",
                               {"layer", "decision"});
  f.with({layer, decision}).inc();
}

void set_policy_version(uint64_t version) {
  static auto& g = r().gauge("bulwark_supervisor_policy_version",
                             "The policy version the egress proxy enforces (0 = the one the sandbox started with).");
  g.get().set(static_cast<double>(version));
}

void set_agent_running(bool running) {
  static auto& g = r().gauge("bulwark_supervisor_agent_running", "1 while the agent command runs.");
  g.get().set(running ? 1 : 0);
}

void set_agent_exit_code(int code) {
  static auto& g = r().gauge("bulwark_supervisor_agent_exit_code", "The agent command's exit code, once it ended.");
  g.get().set(code);
}

}  // namespace bulwark::supervisor
