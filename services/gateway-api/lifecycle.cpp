#include "services/gateway-api/lifecycle.h"

#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::gateway {

bool is_terminal(v1::SandboxPhase p) { return p == v1::DELETED || p == v1::FAILED; }
bool is_live(v1::SandboxPhase p) { return !is_terminal(p) && p != v1::STOPPING; }

void transition(v1::Sandbox& s, v1::SandboxPhase to, const std::string& reason,
                const google::protobuf::Timestamp& now) {
  if (s.phase() == to) return;
  s.set_phase(to);
  s.set_reason(reason);
  *s.mutable_updated_at() = now;
  if (to == v1::READY) *s.mutable_ready_at() = now;
  auto* h = s.add_history();
  h->set_phase(to);
  h->set_reason(reason);
  *h->mutable_at() = now;
}

namespace {

bool before_ready(v1::SandboxPhase p) { return p == v1::PENDING || p == v1::SCHEDULED || p == v1::STARTING; }

std::string exited_reason(int code) { return "the agent command exited with code " + std::to_string(code); }

// READY once both facts hold; straight on to EXITED if the agent already ended (fast commands).
void settle(v1::Sandbox& s, const google::protobuf::Timestamp& now) {
  if (before_ready(s.phase()) && s.workload_running() && s.supervisor_checked_in())
    transition(s, v1::READY, "", now);
  if (s.phase() == v1::READY && s.has_exit_code()) transition(s, v1::EXITED, exited_reason(s.exit_code()), now);
}

// A report of the run before the last start (a stop's exit, arriving after the start): stale.
bool stale(const v1::Sandbox& s, const v1::StateReport& r) {
  if (!s.has_restarted_at() || !r.has_at()) return false;
  if (r.kind() == v1::REPORT_SCHEDULED || r.kind() == v1::REPORT_FAILED) return false;
  return to_millis(r.at()) < to_millis(s.restarted_at());
}

}  // namespace

void check_can_stop(const v1::Sandbox& s) {
  if (s.phase() != v1::READY && s.phase() != v1::EXITED)
    throw Error(Code::kFailedPrecondition,
                "sandbox " + s.sandbox_id() + " is " + v1::SandboxPhase_Name(s.phase()) + ": only a READY or EXITED sandbox can be stopped",
                "phase");
}

bool mark_stopped(v1::Sandbox& s, const google::protobuf::Timestamp& now) {
  if (s.phase() != v1::READY && s.phase() != v1::EXITED) return false;
  s.set_workload_running(false);
  transition(s, v1::STOPPED, "stopped on request; `start` runs it again", now);
  return true;
}

void check_can_start(const v1::Sandbox& s) {
  if (s.phase() != v1::STOPPED && s.phase() != v1::EXITED)
    throw Error(Code::kFailedPrecondition,
                "sandbox " + s.sandbox_id() + " is " + v1::SandboxPhase_Name(s.phase()) + ": only a STOPPED or EXITED sandbox can be started",
                "phase");
}

void mark_restarting(v1::Sandbox& s, const google::protobuf::Timestamp& now) {
  s.set_workload_running(false);
  s.set_supervisor_checked_in(false);
  s.clear_exit_code();
  *s.mutable_restarted_at() = now;
  transition(s, v1::STARTING, "start requested; waiting for the workload and its supervisor", now);
}

bool apply_report(v1::Sandbox& s, const v1::StateReport& r, const google::protobuf::Timestamp& now) {
  if (!is_live(s.phase())) return false;  // STOPPING, DELETED, FAILED: the outcome is decided
  if (stale(s, r)) return false;
  // STOPPED: the stop's own exit reports change nothing; only a vanished workload or a failure do.
  if (s.phase() == v1::STOPPED && r.kind() != v1::REPORT_WORKLOAD_GONE && r.kind() != v1::REPORT_FAILED) return false;
  const std::string before = s.SerializeAsString();
  switch (r.kind()) {
    case v1::REPORT_SCHEDULED:
      if (s.phase() == v1::PENDING) {
        s.set_driver_id(r.driver_id());
        transition(s, v1::SCHEDULED, "placed on driver " + r.driver_id(), now);
      }
      break;
    case v1::REPORT_WORKLOAD_RUNNING:
      s.set_workload_running(true);
      if (!r.driver_id().empty()) s.set_driver_id(r.driver_id());
      if (!r.workload_id().empty()) s.set_workload_id(r.workload_id());
      if (s.phase() == v1::PENDING || s.phase() == v1::SCHEDULED)
        transition(s, v1::STARTING, "workload started; waiting for the supervisor to check in", now);
      break;
    case v1::REPORT_SUPERVISOR_CHECKED_IN:
      s.set_supervisor_checked_in(true);
      if (r.has_confinement()) *s.mutable_confinement() = r.confinement();
      break;
    case v1::REPORT_AGENT_EXITED:
      if (!s.has_exit_code()) s.set_exit_code(r.exit_code());
      break;
    case v1::REPORT_WORKLOAD_EXITED:
      s.set_workload_running(false);
      if (!s.supervisor_checked_in()) {
        transition(s, v1::FAILED,
                   "the workload exited with code " + std::to_string(r.exit_code()) +
                       " before its supervisor checked in (check the driver's log for this workload)",
                   now);
        break;
      }
      if (!s.has_exit_code()) s.set_exit_code(r.exit_code());
      // It ran and checked in, so it was READY, however briefly.
      if (before_ready(s.phase())) transition(s, v1::READY, "", now);
      break;
    case v1::REPORT_WORKLOAD_GONE:
      s.set_workload_running(false);
      if (s.phase() == v1::EXITED) break;  // it ended and was reported; its container going is no failure
      transition(s, v1::FAILED, "the workload disappeared from driver " + r.driver_id() +
                                    (r.reason().empty() ? "" : ": " + r.reason()), now);
      break;
    case v1::REPORT_FAILED:
      transition(s, v1::FAILED, r.reason().empty() ? "failed (no reason given)" : r.reason(), now);
      break;
    default:
      return false;
  }
  settle(s, now);
  bool changed = s.SerializeAsString() != before;
  if (changed) *s.mutable_updated_at() = now;
  return changed;
}

bool needs_cleanup(const v1::Sandbox* s, const v1::StateReport& r) {
  if (r.source() != v1::SOURCE_DRIVER || r.driver_id().empty()) return false;
  if (r.kind() != v1::REPORT_WORKLOAD_RUNNING && r.kind() != v1::REPORT_WORKLOAD_EXITED) return false;
  return s == nullptr || s->phase() == v1::DELETED;
}

bool expire_if_stuck(v1::Sandbox& s, std::chrono::milliseconds limit, const google::protobuf::Timestamp& now) {
  if (!before_ready(s.phase())) return false;
  auto since = to_millis(s.updated_at());
  if (to_millis(now) - since < limit.count()) return false;
  std::string step;
  switch (s.phase()) {
    case v1::PENDING: step = "no scheduler placed it"; break;
    case v1::SCHEDULED: step = "driver " + s.driver_id() + " did not start the workload"; break;
    default:
      step = s.workload_running() ? "its supervisor never checked in (can the workload reach NATS?)"
                                  : "the driver never reported the workload running";
  }
  transition(s, v1::FAILED, "timed out in " + v1::SandboxPhase_Name(s.phase()) + " after " +
                                std::to_string(limit.count() / 1000) + " s: " + step, now);
  return true;
}

}  // namespace bulwark::gateway
