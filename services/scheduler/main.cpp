// bulwark-scheduler: places sandboxes on compute drivers. See README.md.
#include "services/scheduler/scheduler.h"

int main(int argc, char** argv) {
  bulwark::Service svc("scheduler");
  bulwark::scheduler::SchedulerOptions o;
  double driver_timeout_s = 60;
  svc.flags()
      .seconds("driver-timeout", &driver_timeout_s, "how long to wait for a driver's create", 1, 3600)
      .integer("workers", &o.workers, "placements in flight at once", 1, 256);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    o.driver_timeout = std::chrono::milliseconds(static_cast<int64_t>(driver_timeout_s * 1000));
    return std::make_unique<bulwark::scheduler::Scheduler>(bus, o);
  });
}
