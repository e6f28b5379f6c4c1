#include "shared/driver_host.h"

#include <set>

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cctype>
#include <filesystem>

#include "shared/audit.h"
#include "shared/metrics.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark {

namespace {
// Prometheus (docs/observability.md): every contract op by result, its latency, and what the last
// heartbeat said (workloads held, free slots).
metrics::Family<metrics::Counter>& ops_total() {
  static auto& f = metrics::registry().counter("bulwark_driver_ops_total",
                                               "Driver contract requests served, by op and result (ok or the error code).",
                                               {"op", "result"});
  return f;
}
metrics::Family<metrics::Histogram>& op_seconds() {
  static auto& f = metrics::registry().histogram("bulwark_driver_op_duration_seconds",
                                                 "Time the backend took to serve a driver contract request, by op.", {"op"});
  return f;
}

void check_sandbox_id(const std::string& id) {
  if (!is_subject_token(id)) throw Error(Code::kInvalidArgument, "sandbox_id '" + id + "' is not valid", "sandbox_id");
}
}  // namespace

std::string normalize_driver_id(std::string id) {
  for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!is_subject_token(id))
    throw Error(Code::kInvalidArgument, "--driver-id '" + id + "' may hold only a-z, 0-9, '-' and '_'", "driver-id");
  return id;
}

void set_container_capabilities(v1::DriverCapabilities& caps) {
  caps.set_isolation("container");
  caps.set_gpu(true);  // the engine refuses a GPU request where no GPU runtime or CDI spec exists
  caps.set_stop_start(true);
  caps.set_tty(true);
  caps.set_cpu_limit(true);
  caps.set_memory_limit(true);
  caps.set_pids_limit(true);
  caps.set_persistent_storage(true);  // a stopped container keeps its filesystem
}

std::string default_supervisor_bundle() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : (exe.parent_path() / "supervisor-bundle").string();
}

void check_supervisor_bundle(const std::string& dir) {
  if (::access((dir + "/bin/bulwark-supervisor").c_str(), X_OK) != 0)
    throw Error(Code::kFailedPrecondition,
                "no supervisor bundle at " + dir +
                    " (build the project, or set --supervisor-bundle to what scripts/bundle-supervisor wrote)",
                "supervisor-bundle");
}

void enable_kernel_audit() {
  if (std::string why = audit::ensure_enabled(); !why.empty())
    spdlog::warn("kernel audit is off and could not be switched on ({}): sandboxes will not log Landlock denials", why);
}

std::map<std::string, std::string> parse_labels(const std::vector<std::string>& pairs, const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(Code::kInvalidArgument, "--" + flag + " '" + p + "' is not KEY=VALUE", flag);
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

DriverHost::DriverHost(Bus& bus, std::unique_ptr<DriverBackend> backend, DriverHostOptions o)
    : bus_(bus), backend_(std::move(backend)), o_(std::move(o)), work_(o_.workers, o_.kind) {
  serve_async<v1::DriverCapabilitiesRequest, v1::DriverCapabilities>("capabilities",
                                                                     [this](const auto&) { return capabilities(); });
  serve_async<v1::DriverValidateRequest, v1::DriverValidateReply>("validate", [this](const auto& r) { return validate(r); });
  serve_async<v1::DriverCreateRequest, v1::DriverCreateReply>("create", [this](const auto& r) { return create(r); });
  serve_async<v1::DriverDeleteRequest, v1::DriverDeleteReply>("delete", [this](const auto& r) { return remove(r); });
  serve_async<v1::DriverStopRequest, v1::DriverStopReply>("stop", [this](const auto& r) { return stop_workload(r); });
  serve_async<v1::DriverStartRequest, v1::DriverStartReply>("start", [this](const auto& r) { return start_workload(r); });
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

// Requests wait on the backend: run them on workers, so creates proceed in parallel.
template <class Req, class Rep>
void DriverHost::serve_async(const std::string& op, std::function<Rep(const Req&)> fn) {
  subs_.push_back(bus_.subscribe(subjects::driver_op(o_.driver_id, op), [this, fn, op](Msg& m) {
    auto owned = std::make_shared<Msg>(std::move(m));
    work_.post([this, owned, fn, op] {
      bus_.reply_with(*owned, [&] {
        Req req;
        if (!req.ParseFromArray(owned->data().data(), static_cast<int>(owned->data().size())))
          throw Error(Code::kInvalidArgument, "expected a " + req.GetTypeName());
        bus_.respond(*owned, metrics::observe(ops_total(), op_seconds(), {op}, [&] { return fn(req); }));
      });
    });
  }));
}

DriverHost::~DriverHost() {
  stop();
  if (ticker_.joinable()) ticker_.join();
}

void DriverHost::stop() {
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

void DriverHost::heartbeat(bool draining) {
  uint32_t used = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, st] : known_) used += st.exited() ? 0 : 1;
  }
  v1::DriverHeartbeat hb;
  hb.set_driver_id(o_.driver_id);
  hb.set_kind(o_.kind);
  hb.set_capacity(o_.capacity);
  hb.set_free_slots(used >= o_.capacity ? 0 : o_.capacity - used);
  static auto& workloads = metrics::registry().gauge("bulwark_driver_workloads", "Workloads this driver holds that have not exited.");
  static auto& free_slots = metrics::registry().gauge("bulwark_driver_free_slots", "Sandboxes this driver can still take (capacity - workloads).");
  workloads.get().set(used);
  free_slots.get().set(hb.free_slots());
  hb.set_interval_ms(static_cast<uint32_t>(o_.heartbeat.count()));
  hb.set_draining(draining);
  hb.set_version(kVersion);
  for (const auto& [k, v] : o_.labels) (*hb.mutable_labels())[k] = v;
  hb.set_gpus_free(backend_->gpus_free());
  *hb.mutable_at() = now_timestamp();
  bus_.publish(subjects::kDriverHeartbeat, hb);
}

void DriverHost::report(const std::string& sandbox_id, v1::ReportKind kind, const std::string& workload_id,
                        int exit_code, const std::string& reason, const google::protobuf::Timestamp* at) {
  v1::StateReport r;
  r.set_sandbox_id(sandbox_id);
  r.set_source(v1::SOURCE_DRIVER);
  r.set_kind(kind);
  r.set_driver_id(o_.driver_id);
  r.set_workload_id(workload_id);
  r.set_exit_code(exit_code);
  r.set_reason(reason);
  *r.mutable_at() = at ? *at : now_timestamp();
  bus_.js_publish(subjects::sandbox_state(sandbox_id), r);
}

void DriverHost::remember(const v1::WorkloadStatus& st) {
  std::lock_guard lock(mu_);
  known_[st.sandbox_id()] = st;
}

void DriverHost::report_change(const v1::WorkloadStatus& st, const google::protobuf::Timestamp* at) {
  v1::WorkloadStatus last;
  {
    std::lock_guard lock(mu_);
    if (auto it = known_.find(st.sandbox_id()); it != known_.end()) last = it->second;
  }
  if (st.running() && !last.running()) report(st.sandbox_id(), v1::REPORT_WORKLOAD_RUNNING, st.workload_id(), 0, {}, at);
  if (st.exited() && !last.exited())
    report(st.sandbox_id(), v1::REPORT_WORKLOAD_EXITED, st.workload_id(), st.exit_code(), st.reason(), at);
  remember(st);
}

class DriverHost::Call {
 public:
  Call(DriverHost& host, std::string sandbox_id) : host_(host), id_(std::move(sandbox_id)) {
    std::lock_guard lock(host_.mu_);
    ++host_.in_call_[id_];
  }
  ~Call() {
    std::lock_guard lock(host_.mu_);
    if (--host_.in_call_[id_] == 0) host_.in_call_.erase(id_);
    host_.touched_[id_] = std::chrono::steady_clock::now();
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

 private:
  DriverHost& host_;
  std::string id_;
};

bool DriverHost::busy(const std::string& sandbox_id, std::chrono::steady_clock::time_point listed_at) {
  if (in_call_.count(sandbox_id)) return true;
  auto it = touched_.find(sandbox_id);
  return it != touched_.end() && it->second >= listed_at;
}

void DriverHost::poll() {
  const auto listed_at = std::chrono::steady_clock::now();
  // Reports carry when the list was taken: what it shows may be older than a start that follows.
  const auto seen_at = now_timestamp();
  std::map<std::string, v1::WorkloadStatus> now;
  for (auto& st : backend_->list())
    if (!st.sandbox_id().empty()) now[st.sandbox_id()] = std::move(st);
  std::map<std::string, v1::WorkloadStatus> before;
  {
    std::lock_guard lock(mu_);
    before = known_;
  }
  // A list taken while the backend changes a workload can miss it: only a failed get says gone.
  std::map<std::string, v1::WorkloadStatus> gone;
  for (const auto& [id, st] : before) {
    if (now.count(id)) continue;
    if (auto again = backend_->get(id)) now[id] = std::move(*again);
    else gone[id] = st;
  }
  std::lock_guard transitions(transition_mu_);
  // Whether a call has touched it since the list, asked at each report: a call that began after
  // the list may be waiting for transition_mu_ to report what it did.
  auto settled = [&](const std::string& id) {
    std::lock_guard lock(mu_);
    return !busy(id, listed_at);
  };
  for (const auto& [id, st] : now)
    if (settled(id)) report_change(st, &seen_at);
  for (const auto& [id, st] : gone) {
    if (!settled(id)) continue;
    report(id, v1::REPORT_WORKLOAD_GONE, st.workload_id(), 0, "the " + o_.kind + " workload was removed outside Bulwark",
           &seen_at);
    std::lock_guard lock(mu_);
    known_.erase(id);
  }
  std::lock_guard lock(mu_);
  std::erase_if(touched_, [&](const auto& t) { return t.second < listed_at; });
}

v1::DriverCapabilities DriverHost::capabilities() const {
  v1::DriverCapabilities caps;
  backend_->capabilities(caps);
  caps.set_driver_id(o_.driver_id);
  caps.set_kind(o_.kind);
  caps.set_version(kVersion);
  return caps;
}

v1::DriverValidateReply DriverHost::validate(const v1::DriverValidateRequest& req) {
  v1::DriverValidateReply r;
  for (auto& w : backend_->validate(req.spec())) r.add_warnings(std::move(w));
  return r;
}

v1::DriverCreateReply DriverHost::create(const v1::DriverCreateRequest& req) {
  const auto& id = req.sandbox_id();
  check_sandbox_id(id);
  v1::SandboxSpec spec = req.spec();
  // The supervisor reads its flags from BULWARK_* variables and keeps every one of them from the
  // agent (supervisor/agent.cpp), so its NATS credentials travel with the environment the backend
  // gives the workload, whatever the backend. Set last: a user's env cannot replace them.
  if (!req.nats_creds().empty()) (*spec.mutable_env())["BULWARK_NATS_CREDS"] = req.nats_creds();
  // NATS over TLS: the supervisor trusts the CA this driver trusts (its text: no file to mount).
  if (!bus_.ca_pem().empty()) (*spec.mutable_env())["BULWARK_NATS_CA"] = bus_.ca_pem();
  Call call(*this, id);
  auto reply = backend_->create(id, spec);
  std::lock_guard transitions(transition_mu_);
  v1::WorkloadStatus st;
  st.set_sandbox_id(id);
  st.set_workload_id(reply.workload_id());
  st.set_running(true);
  if (!reply.adopted()) {
    try {
      report_change(st);
    } catch (const Error& e) {
      spdlog::warn("sandbox {}: running report not stored ({}); the create reply carries it", id, e.what());
    }
  }
  return reply;
}

v1::DriverDeleteReply DriverHost::remove(const v1::DriverDeleteRequest& req) {
  check_sandbox_id(req.sandbox_id());
  bool existed;
  {
    Call call(*this, req.sandbox_id());
    existed = backend_->remove(req.sandbox_id());
    std::lock_guard lock(mu_);
    known_.erase(req.sandbox_id());
  }
  spdlog::info("sandbox {}: workload {}", req.sandbox_id(), existed ? "removed" : "was already gone");
  v1::DriverDeleteReply r;
  r.set_existed(existed);
  return r;
}

v1::DriverStopReply DriverHost::stop_workload(const v1::DriverStopRequest& req) {
  check_sandbox_id(req.sandbox_id());
  auto grace = req.grace_ms() ? std::chrono::milliseconds(req.grace_ms()) : o_.default_grace;
  v1::DriverStopReply r;
  Call call(*this, req.sandbox_id());
  r.set_existed(backend_->stop(req.sandbox_id(), grace));
  spdlog::info("sandbox {}: workload {}", req.sandbox_id(), r.existed() ? "stopped" : "not found to stop");
  // Report the exit now, stamped before any start that follows this reply. Left to the next poll,
  // it could be stamped after that start, and the gateway would take the old run's exit for the
  // new run's failure. Once: not again if the last report said exited already.
  if (r.existed())
    if (auto st = backend_->get(req.sandbox_id()); st && st->exited()) {
      std::lock_guard transitions(transition_mu_);
      report_change(*st);
    }
  return r;
}

v1::DriverStartReply DriverHost::start_workload(const v1::DriverStartRequest& req) {
  check_sandbox_id(req.sandbox_id());
  const auto& id = req.sandbox_id();
  v1::DriverStartReply r;
  Call call(*this, id);
  // The gateway starts an EXITED sandbox once its agent has ended, which may be a moment before
  // the workload itself has (the supervisor still reporting): a start then would find it running
  // and do nothing. Wait for the end, up to the grace of a stop.
  const auto deadline = std::chrono::steady_clock::now() + o_.default_grace;
  auto current = backend_->get(id);
  while (current && current->running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    current = backend_->get(id);
  }
  if (current && current->running())
    spdlog::warn("sandbox {}: its previous run is still running after {} ms; starting anyway", id, o_.default_grace.count());
  r.set_workload_id(backend_->start(id));
  std::lock_guard transitions(transition_mu_);
  v1::WorkloadStatus st;
  st.set_sandbox_id(id);
  st.set_workload_id(r.workload_id());
  st.set_running(true);
  // Always reported: the last report may still say running (the previous run's end unreported,
  // and now never to be: the gateway counts that run as over). No poll reported this one: the
  // sandbox was busy.
  report(id, v1::REPORT_WORKLOAD_RUNNING, r.workload_id(), 0);
  remember(st);
  spdlog::info("sandbox {}: workload started again", id);
  return r;
}

v1::WorkloadStatus DriverHost::get(const v1::DriverGetRequest& req) {
  check_sandbox_id(req.sandbox_id());
  auto st = backend_->get(req.sandbox_id());
  if (!st) throw Error(Code::kNotFound, "no " + o_.kind + " workload for sandbox " + req.sandbox_id(), "sandbox_id");
  return *st;
}

v1::DriverListReply DriverHost::list() {
  v1::DriverListReply r;
  for (auto& st : backend_->list()) *r.add_workloads() = std::move(st);
  return r;
}

}  // namespace bulwark
