#include "services/driver-docker/driver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "services/driver-docker/state.h"
#include "shared/process.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::docker {

namespace {
void check_sandbox_id(const std::string& id) {
  if (!is_subject_token(id)) throw Error(Code::kInvalidArgument, "sandbox_id '" + id + "' is not valid", "sandbox_id");
}

// Whether something accepts TCP connections at "ip:port" within a second.
bool tcp_answers(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos || ::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &a.sin_addr) != 1)
    return false;
  try {
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  } catch (const std::exception&) {
    return false;
  }
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return false;
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{s.get(), POLLOUT, 0};
  if (::poll(&p, 1, 1000) != 1) return false;
  int err = 0;
  socklen_t len = sizeof err;
  return ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}
}  // namespace

DockerDriver::DockerDriver(Bus& bus, DriverOptions o)
    : bus_(bus), o_(std::move(o)), docker_(o_.socket_path), work_(4, "docker") {
  docker_.ping();
  prepare_network();
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

void DockerDriver::prepare_network() {
  auto& c = o_.container;
  auto net = docker_.ensure_network(c.network);
  if (net.created) spdlog::info("created docker network {} (bridge, gateway {})", c.network, net.gateway);
  if (!o_.sandbox_nats_url.empty()) {
    c.nats_url = o_.sandbox_nats_url;
    return;
  }
  auto url = sandbox_nats_url(o_.nats_url, net.gateway);
  c.nats_url = url.url;
  // A nats-server bound to 127.0.0.1 only would leave every sandbox timing out in STARTING with
  // "its supervisor never checked in": say so now, at start.
  for (const auto& hp : url.rewritten)
    if (!tcp_answers(hp))
      throw Error(Code::kFailedPrecondition,
                  "sandboxes on docker network '" + c.network + "' would reach NATS at " + hp +
                      " (the network's gateway on this host, for the loopback address in --nats-url), but nothing answers "
                      "there: make nats-server listen on that address (or 0.0.0.0), set --sandbox-nats-url, or use "
                      "--network host");
  if (!url.rewritten.empty()) spdlog::info("sandboxes reach NATS at {}", c.nats_url);
}

// Requests wait on dockerd: run them on workers, so creates proceed in parallel.
template <class Req, class Rep>
void DockerDriver::serve_async(const std::string& op, std::function<Rep(const Req&)> fn) {
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

DockerDriver::~DockerDriver() {
  stop();
  if (ticker_.joinable()) ticker_.join();
}

void DockerDriver::stop() {
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

std::string DockerDriver::owned_filter() const { return std::string(kDriverLabel) + "=" + o_.container.driver_id; }

void DockerDriver::heartbeat(bool draining) {
  uint32_t used = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, st] : known_) used += st.exited() ? 0 : 1;
  }
  v1::DriverHeartbeat hb;
  hb.set_driver_id(o_.container.driver_id);
  hb.set_kind("docker");
  hb.set_capacity(o_.capacity);
  hb.set_free_slots(used >= o_.capacity ? 0 : o_.capacity - used);
  hb.set_interval_ms(static_cast<uint32_t>(o_.heartbeat.count()));
  hb.set_draining(draining);
  hb.set_version(kVersion);
  *hb.mutable_at() = now_timestamp();
  bus_.publish(subjects::kDriverHeartbeat, hb);
}

void DockerDriver::report(const std::string& sandbox_id, v1::ReportKind kind, const std::string& workload_id,
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

void DockerDriver::poll() {
  std::map<std::string, v1::WorkloadStatus> now;
  for (const auto& c : docker_.list_containers(owned_filter())) {
    auto st = status_from_list(c);
    if (!st.sandbox_id().empty()) now[st.sandbox_id()] = st;
  }
  std::map<std::string, v1::WorkloadStatus> before;
  {
    std::lock_guard lock(mu_);
    before = known_;
  }
  auto changes = diff(before, now);
  for (const auto& id : changes.running) report(id, v1::REPORT_WORKLOAD_RUNNING, now[id].workload_id(), 0);
  for (const auto& id : changes.exited) {
    // The list has no exit code: ask for it once, when the container is first seen ended.
    auto c = docker_.inspect_container(now[id].workload_id());
    if (!c) {  // removed since the list
      report(id, v1::REPORT_WORKLOAD_GONE, now[id].workload_id(), 0, "the container was removed outside Bulwark");
      now.erase(id);
      continue;
    }
    auto st = status_from_inspect(*c);
    now[id].set_exit_code(st.exit_code());
    std::string why = exit_reason(*c);
    spdlog::info("sandbox {}: container exited with code {}{}", id, st.exit_code(), why.empty() ? "" : " (" + why + ")");
    report(id, v1::REPORT_WORKLOAD_EXITED, st.workload_id(), st.exit_code(), why);
  }
  for (const auto& id : changes.missing) {
    if (docker_.inspect_container(container_name(id))) {
      now[id] = before[id];
      continue;
    }
    spdlog::warn("sandbox {}: its container is gone (removed outside Bulwark)", id);
    report(id, v1::REPORT_WORKLOAD_GONE, before[id].workload_id(), 0, "the container was removed outside Bulwark");
  }
  std::lock_guard lock(mu_);
  // Entries added by create() during this pass are kept; the next pass settles them.
  for (auto& [id, st] : now) known_[id] = st;
  for (auto it = known_.begin(); it != known_.end();)
    it = (!now.count(it->first) && before.count(it->first)) ? known_.erase(it) : std::next(it);
}

v1::DriverCreateReply DockerDriver::adopt(const std::string& sandbox_id, const nlohmann::json& c) {
  std::string id = c.value("Id", "");
  // Created but never started (a driver that died between the two calls): start it now. One
  // that ran and ended stays ended; it is reported so.
  if (c.contains("State") && c["State"].value("Status", "") == "created") docker_.start_container(id);
  v1::DriverCreateReply r;
  r.set_workload_id(id);
  r.set_adopted(true);
  spdlog::info("sandbox {}: container {} already exists; adopted", sandbox_id, id.substr(0, 12));
  return r;
}

v1::DriverCreateReply DockerDriver::create(const v1::DriverCreateRequest& req) {
  const auto& id = req.sandbox_id();
  check_sandbox_id(id);
  std::string name = container_name(id);
  if (auto existing = docker_.inspect_container(name)) return adopt(id, *existing);
  const auto& image = req.spec().image();
  if (image.empty()) throw Error(Code::kInvalidArgument, "spec.image is empty", "image");
  if (!docker_.image_exists(image))
    throw Error(Code::kInvalidArgument,
                "image '" + image + "' is not in dockerd's local store (no registry is used): import it with "
                "`docker import ROOTFS.tar " + image + "` or POST /images/create?fromSrc=- (services/driver-docker/README.md)",
                "image");
  std::string cid;
  try {
    cid = docker_.create_container(name, container_body(id, req.spec(), o_.container));
  } catch (const Error& e) {
    // A concurrent create of the same sandbox won the name: adopt its container.
    if (auto existing = docker_.inspect_container(name)) return adopt(id, *existing);
    throw;
  }
  try {
    docker_.start_container(cid);
  } catch (const Error& e) {
    try {
      docker_.remove_container(cid, 0);
    } catch (const Error& cleanup) {
      spdlog::warn("sandbox {}: could not remove the container that did not start: {}", id, cleanup.what());
    }
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

v1::DriverDeleteReply DockerDriver::remove(const v1::DriverDeleteRequest& req) {
  check_sandbox_id(req.sandbox_id());
  bool existed = docker_.remove_container(container_name(req.sandbox_id()));
  {
    std::lock_guard lock(mu_);
    known_.erase(req.sandbox_id());
  }
  spdlog::info("sandbox {}: container {}", req.sandbox_id(), existed ? "removed" : "was already gone");
  v1::DriverDeleteReply r;
  r.set_existed(existed);
  return r;
}

v1::WorkloadStatus DockerDriver::get(const v1::DriverGetRequest& req) {
  check_sandbox_id(req.sandbox_id());
  auto c = docker_.inspect_container(container_name(req.sandbox_id()));
  if (!c) throw Error(Code::kNotFound, "no container for sandbox " + req.sandbox_id(), "sandbox_id");
  auto st = status_from_inspect(*c);
  st.set_sandbox_id(req.sandbox_id());
  return st;
}

v1::DriverListReply DockerDriver::list() {
  v1::DriverListReply r;
  for (const auto& c : docker_.list_containers(owned_filter())) {
    auto st = status_from_list(c);
    if (st.exited()) {
      // The list has no exit code; an exited container's is fixed, so one inspect each.
      if (auto inspected = docker_.inspect_container(st.workload_id())) st.set_exit_code(status_from_inspect(*inspected).exit_code());
    }
    *r.add_workloads() = st;
  }
  return r;
}

}  // namespace bulwark::docker
