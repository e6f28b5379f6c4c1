#pragma once
// The scheduler process: learns drivers from their heartbeats and serves bulwark.sched.place as a
// queue group, so any number of replicas share the work. Stateless: a restarted replica knows
// every driver again after one heartbeat interval.
#include <mutex>
#include <set>
#include <string>

#include "services/scheduler/placement.h"
#include "shared/bus.h"
#include "shared/metrics.h"
#include "shared/service.h"
#include "shared/work_queue.h"

namespace bulwark::scheduler {

struct SchedulerOptions {
  std::chrono::milliseconds driver_timeout{60000};  // a driver's create may pull layers, start a VM...
  int workers = 8;                                  // placements waiting on drivers at once
  // A fresh replica has heard no heartbeat yet: for this long after start it waits for one before
  // saying that no driver runs.
  std::chrono::milliseconds warmup{1500};
};

class Scheduler : public Component {
 public:
  Scheduler(Bus& bus, SchedulerOptions o);
  void stop() override { work_.shutdown(); }

  v1::PlaceReply place(const v1::PlaceRequest& req);

 private:
  Bus& bus_;
  SchedulerOptions o_;
  Clock::time_point started_ = Clock::now();
  std::mutex mu_;
  DriverRegistry registry_;
  WorkQueue work_;
  std::set<std::string> seen_kinds_;          // of bulwark_drivers_live; only its collector uses it
  metrics::Registry::Collector drivers_metric_;  // reads registry_: goes before it
  Subscription heartbeats_, place_;
};

}  // namespace bulwark::scheduler
