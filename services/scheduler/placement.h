#pragma once
// Which drivers are alive and which one takes the next sandbox. Pure logic: heartbeats in,
// decisions out, time passed in by the caller.
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bulwark/v1/driver.pb.h"
#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::scheduler {

using Clock = std::chrono::steady_clock;

class DriverRegistry {
 public:
  // A heartbeat with draining=true removes the driver at once (it is shutting down).
  void observe(const v1::DriverHeartbeat& hb, Clock::time_point now);
  void forget(const std::string& driver_id);
  // Counts a placement (a slot and its GPUs) against the driver until its next heartbeat reports
  // the truth.
  void reserve(const std::string& driver_id, uint32_t gpus = 0);
  std::vector<v1::DriverHeartbeat> live(Clock::time_point now) const;

  // Among live drivers of the requested kind (any when empty) whose labels include every pair of
  // spec.driver_selector and that have the GPUs spec.resources asks for: the one with the most
  // free slots, ties broken by id so that replicas agree. Throws Error(kUnavailable) with a reason
  // a user can act on: no driver at all, none of that kind, none with those labels, none with
  // those GPUs free, or all full.
  std::string pick(const v1::SandboxSpec& spec, Clock::time_point now, const std::set<std::string>& exclude = {}) const;

 private:
  struct Entry {
    v1::DriverHeartbeat hb;
    Clock::time_point seen;
  };
  static bool alive(const Entry& e, Clock::time_point now);
  std::map<std::string, Entry> drivers_;
};

}  // namespace bulwark::scheduler
