#pragma once
// The sandbox lifecycle as pure logic: no store, no socket. The gateway feeds it the facts that
// other processes report (scheduler, driver, supervisor) in whatever order they arrive; it keeps
// the record consistent and idempotent (a repeated report changes nothing).
//
//   PENDING -> SCHEDULED -> STARTING -> READY -> EXITED -> STOPPING -> DELETED
//   READY/EXITED -> STOPPED (stop) -> STARTING (start) -> READY
//   any live phase -> FAILED (reason)
// READY needs both facts: the driver saw the workload running AND the supervisor checked in.
#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <string>

#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::gateway {

bool is_terminal(v1::SandboxPhase p);  // DELETED, FAILED
bool is_live(v1::SandboxPhase p);      // not STOPPING, DELETED or FAILED

// Records a transition (phase, reason, history, updated_at). No-op when already in that phase.
void transition(v1::Sandbox& s, v1::SandboxPhase to, const std::string& reason,
                const google::protobuf::Timestamp& now);

// Applies one report. Returns true when the record changed.
bool apply_report(v1::Sandbox& s, const v1::StateReport& r, const google::protobuf::Timestamp& now);

// stop: throws failed_precondition unless READY or EXITED (the only phases with a workload to stop).
void check_can_stop(const v1::Sandbox& s);
// After the driver stopped the workload: STOPPED. Returns true when it changed the record.
bool mark_stopped(v1::Sandbox& s, const google::protobuf::Timestamp& now);
// start: throws failed_precondition unless STOPPED or EXITED.
void check_can_start(const v1::Sandbox& s);
// Before asking the driver to start it again: STARTING with the facts of the last run cleared (the
// new run must report running and check in again), restarted_at = now.
void mark_restarting(v1::Sandbox& s, const google::protobuf::Timestamp& now);

// True when a driver still reports a workload for a record that should have none: the gateway
// then asks that driver to delete it (an orphan left by a crash or a race with delete).
bool needs_cleanup(const v1::Sandbox* s, const v1::StateReport& r);

// A sandbox stuck in PENDING/SCHEDULED/STARTING for longer than limit fails with a reason that
// says which step did not happen. Returns true when it changed the record.
bool expire_if_stuck(v1::Sandbox& s, std::chrono::milliseconds limit, const google::protobuf::Timestamp& now);

}  // namespace bulwark::gateway
