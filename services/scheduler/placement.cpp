#include "services/scheduler/placement.h"

#include <algorithm>
#include <map>

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

void DriverRegistry::reserve(const std::string& driver_id, uint32_t gpus) {
  auto it = drivers_.find(driver_id);
  if (it == drivers_.end()) return;
  auto& hb = it->second.hb;
  if (hb.free_slots() > 0) hb.set_free_slots(hb.free_slots() - 1);
  hb.set_gpus_free(hb.gpus_free() > gpus ? hb.gpus_free() - gpus : 0);
}

std::vector<v1::DriverHeartbeat> DriverRegistry::live(Clock::time_point now) const {
  std::vector<v1::DriverHeartbeat> out;
  for (const auto& [id, e] : drivers_)
    if (alive(e, now)) out.push_back(e.hb);
  return out;
}

namespace {
bool selector_matches(const v1::SandboxSpec& spec, const v1::DriverHeartbeat& hb) {
  for (const auto& [k, v] : spec.driver_selector()) {
    auto it = hb.labels().find(k);
    if (it == hb.labels().end() || it->second != v) return false;
  }
  return true;
}

std::string selector_text(const v1::SandboxSpec& spec) {
  std::string out;
  for (const auto& [k, v] : std::map<std::string, std::string>(spec.driver_selector().begin(), spec.driver_selector().end()))
    out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}
}  // namespace

std::string DriverRegistry::pick(const v1::SandboxSpec& spec, Clock::time_point now,
                                 const std::set<std::string>& exclude) const {
  const std::string& kind = spec.driver_kind();
  const uint32_t gpus = spec.resources().gpus();
  const Entry* best = nullptr;
  // How far candidates got, to say which requirement nothing met.
  size_t alive_count = 0, of_kind = 0, selected = 0, with_gpus = 0;
  for (const auto& [id, e] : drivers_) {
    if (!alive(e, now) || exclude.count(id)) continue;
    ++alive_count;
    if (!kind.empty() && e.hb.kind() != kind) continue;
    ++of_kind;
    if (!selector_matches(spec, e.hb)) continue;
    ++selected;
    if (e.hb.gpus_free() < gpus) continue;
    ++with_gpus;
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
  if (selected == 0)
    throw Error(Code::kUnavailable, "no live " + (kind.empty() ? "" : kind + " ") + "driver has the labels " +
                                        selector_text(spec) + " (start one with --label K=V, or change driver_selector)",
                "driver_selector");
  if (with_gpus == 0)
    throw Error(Code::kUnavailable, "no live driver has " + std::to_string(gpus) +
                                        " free GPU(s) (drivers report theirs in their heartbeat): lower resources.gpus "
                                        "or add a GPU host", "resources.gpus");
  bool constrained = gpus > 0 || !spec.driver_selector().empty();
  throw Error(Code::kUnavailable, "all " + std::to_string(with_gpus) + " " + (kind.empty() ? "" : kind + " ") +
                                      "driver(s)" + (constrained ? " that fit" : "") +
                                      " are at capacity: delete sandboxes or add a driver");
}

}  // namespace bulwark::scheduler
