#include "services/scheduler/scheduler.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::scheduler {

namespace {
// Prometheus (docs/observability.md): placements by result and how long they took (the driver's
// create included), and the live drivers by kind, read at each scrape.
auto& placements() {
  static auto& f = metrics::registry().counter("bulwark_placements_total",
                                               "Placement requests answered, by result (ok or the error code).", {"result"});
  return f;
}
auto& placement_seconds() {
  static auto& f = metrics::registry().histogram(
      "bulwark_placement_duration_seconds", "Time from a placement request to its answer, the driver's create included.", {});
  return f;
}
}  // namespace

Scheduler::Scheduler(Bus& bus, SchedulerOptions o) : bus_(bus), o_(o), work_(static_cast<size_t>(o.workers), "place") {
  heartbeats_ = bus_.subscribe(subjects::kDriverHeartbeat, [this](Msg& m) {
    v1::DriverHeartbeat hb;
    if (!hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) || !is_subject_token(hb.driver_id())) {
      spdlog::warn("ignoring a malformed driver heartbeat");
      return;
    }
    std::lock_guard lock(mu_);
    registry_.observe(hb, Clock::now());
  });
  auto& live = metrics::registry().gauge("bulwark_drivers_live", "Drivers whose heartbeats this scheduler hears, by kind.", {"kind"});
  drivers_metric_ = metrics::registry().add_collector([this, &live] {
    std::map<std::string, double> by_kind;
    {
      std::lock_guard lock(mu_);
      for (const auto& hb : registry_.live(Clock::now())) by_kind[hb.kind()] += 1;
    }
    for (const auto& kind : seen_kinds_) by_kind.try_emplace(kind, 0);  // a kind that went away reads 0
    for (const auto& [kind, n] : by_kind) {
      live.with({kind}).set(n);
      seen_kinds_.insert(kind);
    }
  });
  // Placement waits on a driver: hand it to a worker so the delivery thread keeps taking requests.
  place_ = bus_.queue_subscribe(subjects::kPlace, subjects::kSchedulerQueue, [this](Msg& m) {
    auto owned = std::make_shared<Msg>(std::move(m));
    work_.post([this, owned] {
      bus_.reply_with(*owned, [&] {
        v1::PlaceRequest req;
        if (!req.ParseFromArray(owned->data().data(), static_cast<int>(owned->data().size())) ||
            !is_subject_token(req.sandbox_id()))
          throw Error(Code::kInvalidArgument, "bulwark.sched.place needs a PlaceRequest with a valid sandbox_id",
                      "sandbox_id");
        bus_.respond(*owned, metrics::observe(placements(), placement_seconds(), {}, [&] { return place(req); }));
      });
    });
  });
}

v1::PlaceReply Scheduler::place(const v1::PlaceRequest& req) {
  std::set<std::string> tried;
  for (;;) {
    std::string driver;
    while (driver.empty()) {
      {
        std::lock_guard lock(mu_);
        try {
          driver = registry_.pick(req.spec(), Clock::now(), tried);
          registry_.reserve(driver, req.spec().resources().gpus());
          continue;
        } catch (const Error&) {
          if (Clock::now() - started_ >= o_.warmup) throw;  // the user-facing reason
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    tried.insert(driver);
    v1::StateReport rep;
    rep.set_sandbox_id(req.sandbox_id());
    rep.set_source(v1::SOURCE_SCHEDULER);
    rep.set_kind(v1::REPORT_SCHEDULED);
    rep.set_driver_id(driver);
    *rep.mutable_at() = now_timestamp();
    try {
      bus_.js_publish(subjects::sandbox_state(req.sandbox_id()), rep);
    } catch (const Error& e) {
      spdlog::warn("sandbox {}: could not record SCHEDULED ({}); the reply still carries it", req.sandbox_id(), e.what());
    }
    v1::DriverCreateRequest create;
    create.set_sandbox_id(req.sandbox_id());
    *create.mutable_spec() = req.spec();
    create.set_nats_creds(req.nats_creds());
    try {
      auto reply = bus_.request<v1::DriverCreateReply>(subjects::driver_op(driver, "create"), create, o_.driver_timeout);
      spdlog::info("sandbox {} placed on {} (workload {})", req.sandbox_id(), driver, reply.workload_id());
      v1::PlaceReply out;
      out.set_driver_id(driver);
      out.set_workload_id(reply.workload_id());
      return out;
    } catch (const NoResponders&) {
      // Nobody answers on that driver's subject: it died between heartbeats. Try another.
      spdlog::warn("driver {} does not answer; forgetting it", driver);
      std::lock_guard lock(mu_);
      registry_.forget(driver);
    } catch (const Error& e) {
      throw Error(e.code(), "driver " + driver + ": " + e.what(), e.field());
    }
  }
}

}  // namespace bulwark::scheduler
