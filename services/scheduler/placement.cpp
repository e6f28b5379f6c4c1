#include "services/scheduler/placement.h"

#include <algorithm>

#include "shared/error.h"

namespace bulwark::scheduler {

bool DriverRegistry::alive(const Entry& e, Clock::time_point now) {
  // Three missed beats (at least one second) and a driver is gone.
  auto limit = std::chrono::milliseconds(std::max<uint32_t>(e.hb.interval_ms(), 334) * 3);
  return now - e.seen <= limit;
}

void DriverRegistry::observe(const v1::DriverHeartbeat& hb, Clock::time_point now) {
  if (hb.draining()) {
    drivers_.erase(hb.driver_id());
    return;
  }
  drivers_[hb.driver_id()] = Entry{hb, now};
}

void DriverRegistry::forget(const std::string& driver_id) { drivers_.erase(driver_id); }

void DriverRegistry::reserve(const std::string& driver_id) {
  auto it = drivers_.find(driver_id);
  if (it != drivers_.end() && it->second.hb.free_slots() > 0)
    it->second.hb.set_free_slots(it->second.hb.free_slots() - 1);
}

std::vector<v1::DriverHeartbeat> DriverRegistry::live(Clock::time_point now) const {
  std::vector<v1::DriverHeartbeat> out;
  for (const auto& [id, e] : drivers_)
    if (alive(e, now)) out.push_back(e.hb);
  return out;
}

std::string DriverRegistry::pick(const v1::SandboxSpec& spec, Clock::time_point now,
                                 const std::set<std::string>& exclude) const {
  const std::string& kind = spec.driver_kind();
  const Entry* best = nullptr;
  size_t of_kind = 0, alive_count = 0;
  for (const auto& [id, e] : drivers_) {
    if (!alive(e, now) || exclude.count(id)) continue;
    ++alive_count;
    if (!kind.empty() && e.hb.kind() != kind) continue;
    ++of_kind;
    if (e.hb.free_slots() == 0) continue;
    if (!best || e.hb.free_slots() > best->hb.free_slots()) best = &e;
  }
  if (best) return best->hb.driver_id();
  if (alive_count == 0)
    throw Error(Code::kUnavailable,
                kind.empty() ? "no compute driver is running: start bulwark-driver-podman (scripts/up does)"
                             : "no " + kind + " driver is running: start bulwark-driver-" + kind);
  if (of_kind == 0)
    throw Error(Code::kUnavailable, "no " + kind + " driver is running (" + std::to_string(alive_count) +
                                        " driver(s) of other kinds are): start bulwark-driver-" + kind +
                                        " or leave driver_kind empty", "driver_kind");
  throw Error(Code::kUnavailable, "all " + std::to_string(of_kind) + " " + (kind.empty() ? "" : kind + " ") +
                                      "driver(s) are at capacity: delete sandboxes or add a driver");
}

}  // namespace bulwark::scheduler
