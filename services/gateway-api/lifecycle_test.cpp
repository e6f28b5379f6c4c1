#include <doctest/doctest.h>

#include "services/gateway-api/lifecycle.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
google::protobuf::Timestamp at(int64_t s) {
  google::protobuf::Timestamp t;
  t.set_seconds(s);
  return t;
}
v1::StateReport report(v1::ReportKind k, int code = 0) {
  v1::StateReport r;
  r.set_sandbox_id("sb1");
  r.set_kind(k);
  r.set_driver_id("podman-a");
  r.set_workload_id("w1");
  r.set_exit_code(code);
  r.set_source(k == v1::REPORT_SUPERVISOR_CHECKED_IN || k == v1::REPORT_AGENT_EXITED ? v1::SOURCE_SUPERVISOR
                                                                                    : v1::SOURCE_DRIVER);
  return r;
}
v1::Sandbox pending() {
  v1::Sandbox s;
  s.set_sandbox_id("sb1");
  transition(s, v1::PENDING, "", at(0));
  return s;
}
std::vector<v1::SandboxPhase> phases(const v1::Sandbox& s) {
  std::vector<v1::SandboxPhase> out;
  for (const auto& h : s.history()) out.push_back(h.phase());
  return out;
}
}  // namespace

TEST_CASE("the ordinary order walks every phase to READY") {
  auto s = pending();
  CHECK(apply_report(s, report(v1::REPORT_SCHEDULED), at(1)));
  CHECK(s.phase() == v1::SCHEDULED);
  CHECK(apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(2)));
  CHECK(s.phase() == v1::STARTING);
  CHECK(apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(3)));
  CHECK(s.phase() == v1::READY);
  CHECK(s.ready_at().seconds() == 3);
  CHECK(s.workload_id() == "w1");
}

TEST_CASE("READY waits for both facts, whichever arrives first") {
  auto s = pending();
  apply_report(s, report(v1::REPORT_SCHEDULED), at(1));
  apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(2));
  CHECK(s.phase() == v1::SCHEDULED);  // the supervisor alone is not enough
  apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(3));
  CHECK(s.phase() == v1::READY);
}

TEST_CASE("a fast command still passes through READY before EXITED, in any order") {
  auto s = pending();
  apply_report(s, report(v1::REPORT_SCHEDULED), at(1));
  apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(2));
  apply_report(s, report(v1::REPORT_AGENT_EXITED, 3), at(2));
  CHECK(s.phase() == v1::SCHEDULED);
  apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(3));
  CHECK(s.phase() == v1::EXITED);
  CHECK(s.exit_code() == 3);
  CHECK(phases(s) == std::vector<v1::SandboxPhase>{v1::PENDING, v1::SCHEDULED, v1::STARTING, v1::READY, v1::EXITED});
}

TEST_CASE("repeated reports change nothing") {
  auto s = pending();
  apply_report(s, report(v1::REPORT_SCHEDULED), at(1));
  apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(2));
  apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(3));
  auto copy = s;
  CHECK_FALSE(apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(9)));
  CHECK_FALSE(apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(9)));
  CHECK_FALSE(apply_report(s, report(v1::REPORT_SCHEDULED), at(9)));
  CHECK(s.SerializeAsString() == copy.SerializeAsString());
}

TEST_CASE("the agent's exit code wins over the workload's") {
  auto s = pending();
  apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(1));
  apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(2));
  apply_report(s, report(v1::REPORT_AGENT_EXITED, 3), at(3));
  apply_report(s, report(v1::REPORT_WORKLOAD_EXITED, 0), at(4));
  CHECK(s.phase() == v1::EXITED);
  CHECK(s.exit_code() == 3);
  CHECK_FALSE(s.workload_running());
}

TEST_CASE("a workload that dies before its supervisor checks in fails with a reason") {
  auto s = pending();
  apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(1));
  apply_report(s, report(v1::REPORT_WORKLOAD_EXITED, 127), at(2));
  CHECK(s.phase() == v1::FAILED);
  CHECK(s.reason().find("127") != std::string::npos);
  CHECK(s.reason().find("before its supervisor checked in") != std::string::npos);
}

TEST_CASE("decided records ignore late reports") {
  auto s = pending();
  transition(s, v1::STOPPING, "delete requested", at(1));
  CHECK_FALSE(apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(2)));
  transition(s, v1::DELETED, "", at(3));
  CHECK_FALSE(apply_report(s, report(v1::REPORT_FAILED), at(4)));
  CHECK(s.phase() == v1::DELETED);
}

TEST_CASE("orphans are cleaned: a driver reporting a workload for a deleted or unknown sandbox") {
  auto s = pending();
  auto r = report(v1::REPORT_WORKLOAD_RUNNING);
  CHECK_FALSE(needs_cleanup(&s, r));
  CHECK(needs_cleanup(nullptr, r));
  transition(s, v1::DELETED, "", at(1));
  CHECK(needs_cleanup(&s, r));
  CHECK_FALSE(needs_cleanup(&s, report(v1::REPORT_SUPERVISOR_CHECKED_IN)));
}

TEST_CASE("stuck sandboxes time out naming the step that did not happen") {
  auto s = pending();
  CHECK_FALSE(expire_if_stuck(s, std::chrono::seconds(60), at(30)));
  CHECK(expire_if_stuck(s, std::chrono::seconds(60), at(61)));
  CHECK(s.phase() == v1::FAILED);
  CHECK(s.reason().find("timed out in PENDING") != std::string::npos);

  auto t = pending();
  apply_report(t, report(v1::REPORT_WORKLOAD_RUNNING), at(1));
  CHECK(expire_if_stuck(t, std::chrono::seconds(10), at(20)));
  CHECK(t.reason().find("supervisor never checked in") != std::string::npos);

  auto ready = pending();
  apply_report(ready, report(v1::REPORT_WORKLOAD_RUNNING), at(1));
  apply_report(ready, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(1));
  CHECK_FALSE(expire_if_stuck(ready, std::chrono::seconds(1), at(100)));
}

TEST_CASE("a workload that vanishes after its agent exited leaves the sandbox EXITED; before that it FAILS") {
  auto s = pending();
  apply_report(s, report(v1::REPORT_WORKLOAD_RUNNING), at(1));
  apply_report(s, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(2));
  apply_report(s, report(v1::REPORT_AGENT_EXITED, 4), at(3));
  apply_report(s, report(v1::REPORT_WORKLOAD_GONE), at(4));
  CHECK(s.phase() == v1::EXITED);
  CHECK(s.exit_code() == 4);

  auto t = pending();
  apply_report(t, report(v1::REPORT_WORKLOAD_RUNNING), at(1));
  apply_report(t, report(v1::REPORT_SUPERVISOR_CHECKED_IN), at(2));
  apply_report(t, report(v1::REPORT_WORKLOAD_GONE), at(3));
  CHECK(t.phase() == v1::FAILED);
  CHECK(t.reason().find("disappeared") != std::string::npos);
}

TEST_CASE("stop and start: STOPPED ignores the stop's own exit; start needs a new run's facts; late reports are stale") {
  auto s = pending();
  for (auto k : {v1::REPORT_SCHEDULED, v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_SUPERVISOR_CHECKED_IN})
    apply_report(s, report(k), at(1));
  REQUIRE(s.phase() == v1::READY);
  CHECK_THROWS_AS(check_can_start(s), Error);
  check_can_stop(s);
  CHECK(mark_stopped(s, at(5)));
  CHECK(s.phase() == v1::STOPPED);
  CHECK_FALSE(s.workload_running());
  CHECK_THROWS_AS(check_can_stop(s), Error);
  // The stop makes the supervisor and the driver report an exit: the sandbox stays STOPPED.
  auto exit = report(v1::REPORT_AGENT_EXITED, 143);
  *exit.mutable_at() = at(5);
  CHECK_FALSE(apply_report(s, exit, at(6)));
  CHECK_FALSE(apply_report(s, report(v1::REPORT_WORKLOAD_EXITED, 143), at(6)));
  CHECK(s.phase() == v1::STOPPED);
  CHECK_FALSE(s.has_exit_code());

  check_can_start(s);
  mark_restarting(s, at(10));
  CHECK(s.phase() == v1::STARTING);
  CHECK_FALSE(s.supervisor_checked_in());
  // A report of the old run that arrives late is ignored, by its timestamp.
  CHECK_FALSE(apply_report(s, exit, at(11)));
  CHECK_FALSE(s.has_exit_code());
  auto running = report(v1::REPORT_WORKLOAD_RUNNING);
  *running.mutable_at() = at(10);
  auto checked_in = report(v1::REPORT_SUPERVISOR_CHECKED_IN);
  *checked_in.mutable_at() = at(11);
  CHECK(apply_report(s, running, at(11)));
  CHECK(s.phase() == v1::STARTING);  // running alone is not READY: the new supervisor must check in
  CHECK(apply_report(s, checked_in, at(12)));
  CHECK(s.phase() == v1::READY);
  CHECK(phases(s) == std::vector{v1::PENDING, v1::SCHEDULED, v1::STARTING, v1::READY, v1::STOPPED, v1::STARTING,
                                 v1::READY});
}

TEST_CASE("a STOPPED sandbox whose workload vanishes FAILS; a deleting one cannot be started") {
  auto s = pending();
  for (auto k : {v1::REPORT_SCHEDULED, v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_SUPERVISOR_CHECKED_IN})
    apply_report(s, report(k), at(1));
  mark_stopped(s, at(2));
  CHECK(apply_report(s, report(v1::REPORT_WORKLOAD_GONE), at(3)));
  CHECK(s.phase() == v1::FAILED);
  CHECK_THROWS_AS(check_can_start(s), Error);
  try {
    check_can_stop(s);
  } catch (const Error& e) {
    CHECK(e.code() == Code::kFailedPrecondition);
    CHECK(std::string(e.what()).find("FAILED") != std::string::npos);
  }
}
