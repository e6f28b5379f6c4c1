#include "services/gateway-api/status.h"

#include <future>

#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::gateway {

void DriverTable::observe(const v1::DriverHeartbeat& hb, StatusClock::time_point now) {
  if (hb.driver_id().empty()) return;
  drivers_[hb.driver_id()] = Entry{hb, now};
}

std::vector<v1::DriverHeartbeat> DriverTable::live(StatusClock::time_point now) {
  std::vector<v1::DriverHeartbeat> out;
  for (auto it = drivers_.begin(); it != drivers_.end();) {
    // A driver that states no interval beats every second (the drivers' default).
    uint32_t interval = it->second.hb.interval_ms() ? it->second.hb.interval_ms() : 1000;
    if (now - it->second.seen > 3 * std::chrono::milliseconds(interval)) {
      it = drivers_.erase(it);
      continue;
    }
    out.push_back(it->second.hb);
    ++it;
  }
  return out;
}

const std::vector<std::string>& status_services() {
  static const std::vector<std::string> kServices = {"gateway-api",   "scheduler",     "policy-service",    "privacy-router",
                                                     "driver-podman", "driver-docker", "driver-kubernetes", "driver-vm"};
  return kServices;
}

StatusBoard::StatusBoard(Store& store, HealthProbe& probe, std::function<bool()> nats_connected, std::string instance_id)
    : store_(store),
      probe_(probe),
      nats_connected_(std::move(nats_connected)),
      instance_id_(std::move(instance_id)),
      started_(StatusClock::now()),
      started_at_(now_timestamp()) {}

void StatusBoard::on_heartbeat(const v1::DriverHeartbeat& hb) {
  std::lock_guard lock(mu_);
  drivers_.observe(hb, StatusClock::now());
}

v1::StatusReply StatusBoard::get(std::chrono::milliseconds timeout) {
  // Every service at once: the reply takes as long as the slowest one, not the sum.
  std::vector<std::future<v1::ServiceStatus>> asks;
  for (const auto& name : status_services()) {
    asks.push_back(std::async(std::launch::async, [this, name, timeout] {
      v1::ServiceStatus s;
      s.set_service(name);
      try {
        auto h = probe_.health(name, timeout);
        s.set_live(true);
        s.set_instance_id(h.instance_id());
        s.set_version(h.version());
        s.set_uptime_ms(h.uptime_ms());
      } catch (const NoResponders&) {
        s.set_error("not running (nothing answers bulwark." + name + ".health)");
      } catch (const Error& e) {
        s.set_error(e.code() == Code::kTimeout ? "no answer within " + std::to_string(timeout.count()) + " ms" : e.what());
      } catch (const std::exception& e) {
        s.set_error(e.what());
      }
      return s;
    }));
  }

  v1::StatusReply r;
  r.set_version(kVersion);
  r.set_instance_id(instance_id_);
  *r.mutable_started_at() = started_at_;
  r.set_uptime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(StatusClock::now() - started_).count());
  r.set_nats_connected(nats_connected_ && nats_connected_());
  {
    std::lock_guard lock(mu_);
    for (auto& hb : drivers_.live(StatusClock::now())) *r.add_drivers() = std::move(hb);
  }
  auto counts = store_.count_by_phase();
  for (int i = v1::PENDING; i <= v1::SandboxPhase_MAX; ++i) {
    if (!v1::SandboxPhase_IsValid(i)) continue;
    auto it = counts.find(static_cast<v1::SandboxPhase>(i));
    (*r.mutable_sandboxes_by_phase())[v1::SandboxPhase_Name(static_cast<v1::SandboxPhase>(i))] =
        it == counts.end() ? 0 : static_cast<uint32_t>(it->second);
  }
  for (auto& f : asks) *r.add_services() = f.get();
  return r;
}

}  // namespace bulwark::gateway
