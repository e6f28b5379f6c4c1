#include "services/driver-k8s/backend.h"

#include <spdlog/spdlog.h>

#include <thread>

namespace bulwark::k8s {

namespace {
// metadata.<key> of an object that may lack it (a const json's operator[] must not miss).
std::string meta(const nlohmann::json& obj, const char* key) {
  auto m = obj.find("metadata");
  return m != obj.end() && m->is_object() ? m->value(key, "") : "";
}
}  // namespace

K8sBackend::K8sBackend(std::unique_ptr<KubeClient> client, BackendOptions o)
    : client_(std::move(client)), o_(std::move(o)), selector_(label_selector(o_.resource.driver_id)) {
  if (o_.version.empty()) o_.version = client_->discover_version();
  o_.resource.namespace_name = client_->namespace_name();
  // One list now, so a start-up problem (credentials, RBAC, namespace) stops the driver with its
  // reason instead of a warning per tick.
  client_->list(o_.version, selector_);
  spdlog::info("driver-k8s: {}/{} Sandboxes in namespace {} at {}", kGroup, o_.version, client_->namespace_name(),
               client_->server());
  informer_ = std::thread([this] { inform(); });
}

K8sBackend::~K8sBackend() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  client_->cancel_watches();
  if (informer_.joinable()) informer_.join();
}

void K8sBackend::inform() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    try {
      auto l = client_->list(o_.version, selector_);
      std::string rv = l.contains("metadata") ? l["metadata"].value("resourceVersion", "") : "";
      std::map<std::string, nlohmann::json> fresh;
      if (l.contains("items") && l["items"].is_array())
        for (const auto& it : l["items"]) fresh[meta(it, "name")] = it;
      spdlog::debug("driver-k8s: listed {} Sandboxes at resourceVersion {}; watching", fresh.size(), rv);
      {
        std::lock_guard g(mu_);
        cache_ = std::move(fresh);
        synced_ = true;
      }
      bool relist = false;
      std::string failed;  // an ERROR event other than 410 Gone
      while (!relist) {
        {
          std::lock_guard g(mu_);
          if (stopping_) break;
        }
        client_->watch(o_.version, selector_, rv, o_.watch_timeout_s, [&](const nlohmann::json& ev) {
          std::string type = ev.value("type", "");
          const auto& obj = ev.contains("object") ? ev["object"] : nlohmann::json::object();
          if (type == "ERROR") {
            // 410 Gone: the resourceVersion is too old, list again now; anything else: after a pause.
            if (obj.value("code", 0) == 410)
              spdlog::info("driver-k8s: watch expired ({}); listing again", obj.value("message", ""));
            else
              failed = obj.value("message", "an ERROR event");
            relist = true;
            return false;
          }
          if (std::string v = meta(obj, "resourceVersion"); !v.empty()) rv = v;
          if (type == "BOOKMARK") return true;
          std::string name = meta(obj, "name");
          std::lock_guard g(mu_);
          if (type == "DELETED") {
            cache_.erase(name);
            ended_.erase(name);
          } else if (type == "ADDED" || type == "MODIFIED") {
            cache_[name] = obj;
          }
          return !stopping_;
        });
      }
      if (!failed.empty()) throw Error(Code::kUnavailable, "watch: " + failed);
      lock.lock();
      continue;  // relist now (the watch expired), or stop
    } catch (const std::exception& e) {
      spdlog::warn("driver-k8s: watching Sandboxes: {} (retrying; polls list directly meanwhile)", e.what());
      std::lock_guard g(mu_);
      synced_ = false;
    }
    lock.lock();
    if (!stopping_) cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
  }
}

bool K8sBackend::owned(const nlohmann::json& obj) const {
  auto m = obj.find("metadata");
  if (m == obj.end() || !m->is_object()) return false;
  const auto labels = m->value("labels", nlohmann::json::object());
  if (!labels.is_object()) return false;
  return labels.value(kDriverLabel, "") == o_.resource.driver_id && labels.value(kManagedLabel, "") == "true";
}

v1::WorkloadStatus K8sBackend::status_of(const nlohmann::json& obj) {
  const std::string name = meta(obj, "name");
  const std::string rv = meta(obj, "resourceVersion");
  {
    // An ended workload stays as it is until its resource changes: no pod GET on every poll.
    std::lock_guard lock(mu_);
    auto it = ended_.find(name);
    if (it != ended_.end() && it->second.first == rv) return it->second.second;
  }
  std::optional<nlohmann::json> pod;
  // Not ready yet, or ended: only the pod (named as its Sandbox) holds the agent's exit code.
  if (needs_pod(obj)) {
    try {
      pod = client_->get_pod(name);
    } catch (const Error& e) {
      spdlog::debug("pod of {}: {}", name, e.what());
    }
  }
  auto st = status_from_resource(obj, pod);
  std::lock_guard lock(mu_);
  if (st.exited() && !rv.empty())
    ended_[name] = {rv, st};
  else
    ended_.erase(name);
  return st;
}

void K8sBackend::capabilities(v1::DriverCapabilities& caps) const {
  caps.set_isolation("pod");
  caps.set_gpu(true);
  caps.set_stop_start(true);
  caps.set_tty(false);
  caps.set_cpu_limit(true);
  caps.set_memory_limit(true);
  caps.set_pids_limit(false);  // a pod's pids limit is the kubelet's, cluster-wide
  caps.set_persistent_storage(!o_.resource.storage_size.empty());
}

std::vector<std::string> K8sBackend::validate(const v1::SandboxSpec& spec) {
  check_spec(spec);
  std::vector<std::string> warnings;
  if (spec.resources().pids() > 0)
    warnings.push_back("resources.pids is not applied by driver-k8s: the kubelet's --pod-max-pids limits a pod");
  if (spec.tty()) warnings.push_back("tty is not supported by driver-k8s: the agent's output comes as stdout and stderr");
  if (o_.gpus > 0 && spec.resources().gpus() > o_.gpus)
    throw Error(Code::kInvalidArgument,
                "resources.gpus " + std::to_string(spec.resources().gpus()) + " is more than the " +
                    std::to_string(o_.gpus) + " GPUs this driver is given (--gpus)",
                "resources.gpus");
  return warnings;
}

v1::DriverCreateReply K8sBackend::create(const std::string& sandbox_id, const v1::SandboxSpec& spec) {
  validate(spec);
  auto body = sandbox_body(o_.version, sandbox_id, spec, o_.resource);
  const std::string name = body["metadata"]["name"];
  v1::DriverCreateReply reply;
  reply.set_workload_id(client_->namespace_name() + "/" + name);
  try {
    auto created = client_->create(o_.version, body);
    std::lock_guard lock(mu_);
    cache_.try_emplace(name, created);
    return reply;
  } catch (const Error& e) {
    if (e.code() != Code::kAlreadyExists) throw;
  }
  // A repeated create: adopt what exists, if it is this driver's, and make it run.
  auto existing = client_->get(o_.version, name);
  if (!existing) return create(sandbox_id, spec);  // deleted meanwhile
  if (!owned(*existing))
    throw Error(Code::kAlreadyExists,
                "Sandbox " + client_->namespace_name() + "/" + name + " exists but is not driver " +
                    o_.resource.driver_id + "'s: delete it (`kubectl delete sandbox " + name + "`) or use another namespace",
                "sandbox_id");
  if (!wants_running(*existing)) client_->patch(o_.version, name, run_patch(o_.version, true));
  reply.set_adopted(true);
  return reply;
}

bool K8sBackend::remove(const std::string& sandbox_id) {
  const std::string name = resource_name(sandbox_id);
  bool existed = client_->remove(o_.version, name);
  std::lock_guard lock(mu_);
  cache_.erase(name);
  ended_.erase(name);
  return existed;
}

bool K8sBackend::stop(const std::string& sandbox_id, std::chrono::milliseconds grace) {
  // The grace is the pod's terminationGracePeriodSeconds: the controller deletes the pod.
  const std::string name = resource_name(sandbox_id);
  try {
    auto obj = client_->patch(o_.version, name, run_patch(o_.version, false));
    std::lock_guard lock(mu_);
    cache_[name] = obj;
  } catch (const Error& e) {
    if (e.code() == Code::kNotFound) return false;
    throw;
  }
  // Pod deletion is asynchronous: answer once the pod is gone, as the container drivers do, so a
  // start right after a stop cannot meet the old run's supervisor still reporting its end.
  auto deadline = std::chrono::steady_clock::now() + grace + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      if (!client_->get_pod(name)) return true;
    } catch (const Error& e) {
      spdlog::debug("pod of {} while stopping: {}", name, e.what());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw Error(Code::kTimeout, "the pod of Sandbox " + name + " was still there " +
                                  std::to_string((grace + std::chrono::seconds(30)).count() / 1000) +
                                  " s after the stop (is the agent-sandbox controller running?)");
}

std::string K8sBackend::start(const std::string& sandbox_id) {
  const std::string name = resource_name(sandbox_id);
  // A Sandbox whose agent ended on its own still says Running, and its pod (restartPolicy Never)
  // stays ended: the controller makes a new pod only for a Sandbox that was suspended. So suspend
  // it first (its pod is done: no grace).
  if (auto obj = client_->get(o_.version, name); obj && wants_running(*obj)) stop(sandbox_id, std::chrono::milliseconds(0));
  try {
    auto obj = client_->patch(o_.version, name, run_patch(o_.version, true));
    std::lock_guard lock(mu_);
    cache_[name] = obj;
  } catch (const Error& e) {
    if (e.code() == Code::kNotFound)
      throw Error(Code::kNotFound, "no Sandbox resource for sandbox " + sandbox_id + " to start", "sandbox_id");
    throw;
  }
  return client_->namespace_name() + "/" + name;
}

std::optional<v1::WorkloadStatus> K8sBackend::get(const std::string& sandbox_id) {
  auto obj = client_->get(o_.version, resource_name(sandbox_id));
  if (!obj || !owned(*obj)) return std::nullopt;
  return status_of(*obj);
}

std::vector<v1::WorkloadStatus> K8sBackend::list() {
  std::vector<nlohmann::json> objs;
  {
    std::lock_guard lock(mu_);
    if (synced_)
      for (const auto& [name, obj] : cache_) objs.push_back(obj);
  }
  if (objs.empty()) {
    // Not synced (the watch is being re-established), or nothing cached: ask the server itself.
    auto l = client_->list(o_.version, selector_);
    if (l.contains("items") && l["items"].is_array())
      for (auto& it : l["items"]) objs.push_back(it);
  }
  std::vector<v1::WorkloadStatus> out;
  for (const auto& obj : objs)
    if (owned(obj)) out.push_back(status_of(obj));
  return out;
}

uint32_t K8sBackend::gpus_free() {
  if (o_.gpus == 0) return 0;
  uint64_t used = 0;
  std::lock_guard lock(mu_);
  for (const auto& [name, obj] : cache_) {
    if (!wants_running(obj)) continue;
    try {
      for (const auto& c : obj.at("spec").at("podTemplate").at("spec").at("containers")) {
        auto lim = c.value("resources", nlohmann::json::object()).value("limits", nlohmann::json::object());
        if (lim.contains(kGpuResource)) {
          const auto& g = lim[kGpuResource];
          used += g.is_string() ? std::stoull(g.get<std::string>()) : g.get<uint64_t>();
        }
      }
    } catch (const std::exception&) {
      // A resource edited into another shape counts no GPUs.
    }
  }
  return used >= o_.gpus ? 0 : static_cast<uint32_t>(o_.gpus - used);
}

}  // namespace bulwark::k8s
