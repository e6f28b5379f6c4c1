#include "services/driver-podman/driver.h"

#include <spdlog/spdlog.h>

#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::podman {

namespace {
void check_sandbox_id(const std::string& id) {
  if (!is_subject_token(id)) throw Error(Code::kInvalidArgument, "sandbox_id '" + id + "' is not valid", "sandbox_id");
}
}  // namespace

PodmanDriver::PodmanDriver(Bus& bus, DriverOptions o)
    : bus_(bus), o_(std::move(o)), podman_(o_.socket_path), work_(4, "podman") {
  podman_.ping();
  serve_async<v1::DriverCreateRequest, v1::DriverCreateReply>("create", [this](const auto& r) { return create(r); });
  serve_async<v1::DriverDeleteRequest, v1::DriverDeleteReply>("delete", [this](const auto& r) { return remove(r); });
  serve_async<v1::DriverGetRequest, v1::WorkloadStatus>("get", [this](const auto& r) { return get(r); });
  serve_async<v1::DriverListRequest, v1::DriverListReply>("list", [this](const auto&) { return list(); });

  poll();  // reconcile what a previous run left before announcing capacity
  heartbeat(false);
  ticker_ = std::thread([this] {
    auto next_beat = std::chrono::steady_clock::now() + o_.heartbeat;
    auto next_poll = std::chrono::steady_clock::now() + o_.poll;
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_until(lock, std::min(next_beat, next_poll), [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      auto now = std::chrono::steady_clock::now();
      try {
        if (now >= next_poll) {
          poll();
          next_poll = now + o_.poll;
        }
        if (now >= next_beat) {
          heartbeat(false);
          next_beat = now + o_.heartbeat;
        }
      } catch (const std::exception& e) {
        spdlog::warn("driver tick: {}", e.what());
      }
      lock.lock();
    }
  });
}

// Requests wait on podman: run them on workers, so creates proceed in parallel.
template <class Req, class Rep>
void PodmanDriver::serve_async(const std::string& op, std::function<Rep(const Req&)> fn) {
  subs_.push_back(bus_.subscribe(subjects::driver_op(o_.container.driver_id, op), [this, fn](Msg& m) {
    auto owned = std::make_shared<Msg>(std::move(m));
    work_.post([this, owned, fn] {
      bus_.reply_with(*owned, [&] {
        Req req;
        if (!req.ParseFromArray(owned->data().data(), static_cast<int>(owned->data().size())))
          throw Error(Code::kInvalidArgument, "expected a " + req.GetTypeName());
        bus_.respond(*owned, fn(req));
      });
    });
  }));
}

PodmanDriver::~PodmanDriver() {
  stop();
  if (ticker_.joinable()) ticker_.join();
}

void PodmanDriver::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  try {
    heartbeat(true);  // the scheduler forgets this driver now, not three beats later
    bus_.flush();
  } catch (const std::exception& e) {
    spdlog::warn("could not announce draining: {}", e.what());
  }
  work_.shutdown();
}

void PodmanDriver::heartbeat(bool draining) {
  uint32_t used = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, st] : known_) used += st.exited() ? 0 : 1;
  }
  v1::DriverHeartbeat hb;
  hb.set_driver_id(o_.container.driver_id);
  hb.set_kind("podman");
  hb.set_capacity(o_.capacity);
  hb.set_free_slots(used >= o_.capacity ? 0 : o_.capacity - used);
  hb.set_interval_ms(static_cast<uint32_t>(o_.heartbeat.count()));
  hb.set_draining(draining);
  hb.set_version(kVersion);
  *hb.mutable_at() = now_timestamp();
  bus_.publish(subjects::kDriverHeartbeat, hb);
}

void PodmanDriver::report(const std::string& sandbox_id, v1::ReportKind kind, const std::string& workload_id,
                          int exit_code, const std::string& reason) {
  v1::StateReport r;
  r.set_sandbox_id(sandbox_id);
  r.set_source(v1::SOURCE_DRIVER);
  r.set_kind(kind);
  r.set_driver_id(o_.container.driver_id);
  r.set_workload_id(workload_id);
  r.set_exit_code(exit_code);
  r.set_reason(reason);
  *r.mutable_at() = now_timestamp();
  bus_.js_publish(subjects::sandbox_state(sandbox_id), r);
}

v1::WorkloadStatus PodmanDriver::status_of(const nlohmann::json& c) const {
  v1::WorkloadStatus st;
  st.set_workload_id(c.value("Id", ""));
  if (c.contains("Labels") && c["Labels"].is_object()) st.set_sandbox_id(c["Labels"].value(kSandboxLabel, ""));
  std::string state = c.value("State", "");
  st.set_running(state == "running");
  st.set_exited(state == "exited" || state == "stopped" || c.value("Exited", false));
  st.set_exit_code(c.value("ExitCode", 0));
  return st;
}

void PodmanDriver::poll() {
  auto listed = podman_.list_containers(std::string(kDriverLabel) + "=" + o_.container.driver_id);
  std::map<std::string, v1::WorkloadStatus> now;
  for (const auto& c : listed) {
    auto st = status_of(c);
    if (!st.sandbox_id().empty()) now[st.sandbox_id()] = st;
  }
  std::map<std::string, v1::WorkloadStatus> before;
  {
    std::lock_guard lock(mu_);
    before = known_;
  }
  for (const auto& [id, st] : now) {
    auto it = before.find(id);
    bool was_running = it != before.end() && it->second.running();
    bool was_exited = it != before.end() && it->second.exited();
    if (st.running() && !was_running) report(id, v1::REPORT_WORKLOAD_RUNNING, st.workload_id(), 0);
    if (st.exited() && !was_exited) report(id, v1::REPORT_WORKLOAD_EXITED, st.workload_id(), st.exit_code());
  }
  for (const auto& [id, st] : before) {
    if (now.count(id)) continue;
    // A list taken while podman changes a container can miss it: only a failed inspect says gone.
    if (auto c = podman_.inspect_container(container_name(id))) {
      now[id] = st;
      continue;
    }
    report(id, v1::REPORT_WORKLOAD_GONE, st.workload_id(), 0, "the container was removed outside Bulwark");
  }
  std::lock_guard lock(mu_);
  // Entries added by create() during this pass are kept; the next pass settles them.
  for (auto& [id, st] : now) known_[id] = st;
  for (auto it = known_.begin(); it != known_.end();)
    it = (!now.count(it->first) && before.count(it->first)) ? known_.erase(it) : std::next(it);
}

v1::DriverCreateReply PodmanDriver::adopt(const std::string& sandbox_id, const nlohmann::json& c) {
  const auto& state = c["State"];
  std::string id = c.value("Id", "");
  if (state.value("Status", "") == "created" || state.value("Status", "") == "configured") podman_.start_container(id);
  v1::DriverCreateReply r;
  r.set_workload_id(id);
  r.set_adopted(true);
  spdlog::info("sandbox {}: container {} already exists; adopted", sandbox_id, id.substr(0, 12));
  return r;
}

v1::DriverCreateReply PodmanDriver::create(const v1::DriverCreateRequest& req) {
  const auto& id = req.sandbox_id();
  check_sandbox_id(id);
  std::string name = container_name(id);
  if (auto existing = podman_.inspect_container(name)) return adopt(id, *existing);
  const auto& image = req.spec().image();
  if (image.empty()) throw Error(Code::kInvalidArgument, "spec.image is empty", "image");
  if (!podman_.image_exists(image))
    throw Error(Code::kFailedPrecondition,
                "image '" + image + "' is not in podman's local store (no registry is used): build it with "
                "scripts/build-base-image or `podman import`", "image");
  std::string cid;
  try {
    cid = podman_.create_container(container_spec(id, req.spec(), o_.container));
  } catch (const Error& e) {
    // A concurrent create of the same sandbox won the name: adopt its container.
    if (auto existing = podman_.inspect_container(name)) return adopt(id, *existing);
    throw;
  }
  try {
    podman_.start_container(cid);
  } catch (const Error& e) {
    podman_.remove_container(cid);
    throw Error(e.code(), std::string("cannot start the sandbox container: ") + e.what());
  }
  {
    std::lock_guard lock(mu_);
    v1::WorkloadStatus st;
    st.set_sandbox_id(id);
    st.set_workload_id(cid);
    st.set_running(true);
    known_[id] = st;
  }
  try {
    report(id, v1::REPORT_WORKLOAD_RUNNING, cid, 0);
  } catch (const Error& e) {
    spdlog::warn("sandbox {}: running report not stored ({}); the create reply carries it", id, e.what());
  }
  spdlog::info("sandbox {}: container {} started from {}", id, cid.substr(0, 12), image);
  v1::DriverCreateReply r;
  r.set_workload_id(cid);
  return r;
}

v1::DriverDeleteReply PodmanDriver::remove(const v1::DriverDeleteRequest& req) {
  check_sandbox_id(req.sandbox_id());
  bool existed = podman_.remove_container(container_name(req.sandbox_id()));
  {
    std::lock_guard lock(mu_);
    known_.erase(req.sandbox_id());
  }
  spdlog::info("sandbox {}: container {}", req.sandbox_id(), existed ? "removed" : "was already gone");
  v1::DriverDeleteReply r;
  r.set_existed(existed);
  return r;
}

v1::WorkloadStatus PodmanDriver::get(const v1::DriverGetRequest& req) {
  check_sandbox_id(req.sandbox_id());
  auto c = podman_.inspect_container(container_name(req.sandbox_id()));
  if (!c) throw Error(Code::kNotFound, "no container for sandbox " + req.sandbox_id(), "sandbox_id");
  v1::WorkloadStatus st;
  st.set_sandbox_id(req.sandbox_id());
  st.set_workload_id(c->value("Id", ""));
  const auto& s = (*c)["State"];
  st.set_running(s.value("Running", false));
  st.set_exited(s.value("Status", "") == "exited" || s.value("Status", "") == "stopped");
  st.set_exit_code(s.value("ExitCode", 0));
  return st;
}

v1::DriverListReply PodmanDriver::list() {
  v1::DriverListReply r;
  for (const auto& c : podman_.list_containers(std::string(kDriverLabel) + "=" + o_.container.driver_id))
    *r.add_workloads() = status_of(c);
  return r;
}

}  // namespace bulwark::podman
