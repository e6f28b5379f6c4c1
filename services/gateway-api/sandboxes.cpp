#include "services/gateway-api/sandboxes.h"

#include <cmath>

#include <spdlog/spdlog.h>

#include "services/gateway-api/gateway_metrics.h"
#include "services/gateway-api/lifecycle.h"
#include "services/gateway-api/watch.h"
#include "shared/error.h"
#include "shared/policy.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {
constexpr size_t kMaxLogScan = 100000;  // the most lines `since` looks through (the logs route's tail cap)
const char* const kDriverKinds[] = {"podman", "docker", "kubernetes", "vm"};

void check_key(const std::string& field, const std::string& key) {
  if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos)
    throw Error(Code::kInvalidArgument, field + ": '" + key + "' is not a valid name (empty, or contains '=' or NUL)",
                field);
}
}  // namespace

void normalize_spec(v1::SandboxSpec& spec, const SandboxDefaults& d) {
  if (spec.name().empty()) spec.set_name("sandbox-" + random_hex(3));
  if (!is_dns_label(spec.name()))
    throw Error(Code::kInvalidArgument,
                "name: '" + spec.name() + "' must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit",
                "name");
  if (spec.image().empty()) spec.set_image(d.image);
  if (spec.command().empty())
    for (const auto& c : d.command) spec.add_command(c);
  if (spec.command(0).empty()) throw Error(Code::kInvalidArgument, "command[0]: the program name is empty", "command[0]");
  for (const auto& [k, v] : spec.env()) {
    check_key("env", k);
    // The supervisor starts (as root, before confinement) in the environment the driver gives
    // it: variables that make the loader or libc load code must not come from a request.
    if (k.rfind("LD_", 0) == 0 || k == "GLIBC_TUNABLES" || k == "GCONV_PATH" || k == "LOCPATH" || k == "HOSTALIASES")
      throw Error(Code::kInvalidArgument, "env." + k + ": not allowed (it would change how the sandbox's supervisor loads code)",
                  "env." + k);
  }
  for (const auto& [k, v] : spec.labels()) check_key("labels", k);
  if (!spec.policy().empty()) {
    // The same parser the supervisor enforces with: a policy accepted here is the policy enforced.
    try {
      policy::parse_policy(spec.policy(), "policy");
    } catch (const Error& e) {
      throw Error(Code::kInvalidArgument, e.what(), "policy");
    }
  }
  const auto& res = spec.resources();
  if (!std::isfinite(res.cpus()) || res.cpus() < 0 || res.cpus() > 4096)
    throw Error(Code::kInvalidArgument, "resources.cpus: must be between 0 (no limit) and 4096", "resources.cpus");
  if (res.gpus() > 64) throw Error(Code::kInvalidArgument, "resources.gpus: at most 64", "resources.gpus");
  if (res.pids() != 0 && res.pids() < 16)
    throw Error(Code::kInvalidArgument, "resources.pids: at least 16 (the supervisor needs a few)", "resources.pids");
  for (const auto& [k, v] : spec.driver_selector()) check_key("driver_selector", k);
  if (!spec.driver_kind().empty()) {
    bool known = false;
    for (const char* k : kDriverKinds) known = known || spec.driver_kind() == k;
    if (!known)
      throw Error(Code::kInvalidArgument,
                  "driver_kind: '" + spec.driver_kind() + "' is not one of podman, docker, kubernetes, vm", "driver_kind");
  }
}

Sandboxes::Sandboxes(Store& store, ControlPlane& cp, SandboxDefaults defaults)
    : store_(store), cp_(cp), defaults_(std::move(defaults)), work_(4, "gateway") {}

Sandboxes::~Sandboxes() { work_.shutdown(); }

v1::Sandbox Sandboxes::create(v1::SandboxSpec spec, const std::string& key, bool* created, const std::string& owner) {
  normalize_spec(spec, defaults_);
  for (int i = 0; i < spec.providers_size(); ++i) {
    const std::string field = "providers[" + std::to_string(i) + "]";
    if (!store_.find_provider(spec.providers(i)))
      throw Error(Code::kInvalidArgument, field + ": no provider named '" + spec.providers(i) + "' (see GET /v1/providers)",
                  field);
  }
  auto now = now_timestamp();
  v1::Sandbox s;
  s.set_sandbox_id(random_hex(8));
  s.set_name(spec.name());
  *s.mutable_spec() = spec;
  s.set_owner(owner);
  *s.mutable_created_at() = now;
  transition(s, v1::PENDING, "waiting for a scheduler", now);
  auto stored = store_.insert(s, key, created);
  if (*created) {
    watchers_.publish(phase_event(stored, v1::PHASE_UNSPECIFIED));
    spdlog::info("sandbox {} ({}) created: image {}", s.sandbox_id(), s.name(), spec.image());
    std::string id = s.sandbox_id();
    work_.post([this, id] { place(id); });
  }
  return stored;
}

v1::Sandbox Sandboxes::get(const std::string& ref) {
  auto s = store_.find(ref);
  if (!s) throw Error(Code::kNotFound, "no sandbox with id or name '" + ref + "'", "sandbox_id");
  return *s;
}

std::vector<v1::Sandbox> Sandboxes::list(bool include_deleted) { return store_.list(include_deleted); }

v1::ListSandboxesReply Sandboxes::list(const SandboxFilter& f, const std::string& page_token, size_t limit) {
  std::optional<SandboxCursor> after;
  if (!page_token.empty()) after = decode_sandbox_token(page_token, f);
  bool more = false;
  v1::ListSandboxesReply reply;
  for (auto& s : store_.page(f, after, limit, &more)) *reply.add_sandboxes() = std::move(s);
  if (more) {
    const auto& last = reply.sandboxes(reply.sandboxes_size() - 1);
    reply.set_next_page_token(encode_sandbox_token({to_millis(last.created_at()), last.sandbox_id()}, f));
  }
  return reply;
}

v1::Sandbox Sandboxes::remove(const std::string& ref) {
  auto s = get(ref);
  auto after = modify(s.sandbox_id(), [&](v1::Sandbox& r) {
    if (r.phase() == v1::DELETED || r.phase() == v1::STOPPING) return false;
    transition(r, v1::STOPPING, "delete requested", now_timestamp());
    return true;
  });
  if (after && after->phase() == v1::STOPPING) {
    std::string id = s.sandbox_id();
    work_.post([this, id] { destroy(id); });
    if (removed_) work_.post([this, id] { removed_(id); });
  }
  return after.value_or(s);
}

v1::Sandbox Sandboxes::stop(const std::string& ref, std::chrono::milliseconds grace) {
  auto s = get(ref);
  check_can_stop(s);
  cp_.stop_workload(s.driver_id(), s.sandbox_id(), grace);
  auto after = modify(s.sandbox_id(), [&](v1::Sandbox& r) { return mark_stopped(r, now_timestamp()); });
  spdlog::info("sandbox {} stopped", s.sandbox_id());
  return after.value_or(s);
}

v1::Sandbox Sandboxes::start(const std::string& ref) {
  auto s = get(ref);
  check_can_start(s);
  // STARTING before the driver call: the new run's reports (running, check-in) may arrive before
  // the driver answers, and must count.
  auto starting = modify(s.sandbox_id(), [&](v1::Sandbox& r) {
    check_can_start(r);  // again under the store's lock: a concurrent start or delete won
    mark_restarting(r, now_timestamp());
    return true;
  });
  try {
    cp_.start_workload(s.driver_id(), s.sandbox_id());
  } catch (const Error& e) {
    modify(s.sandbox_id(), [&](v1::Sandbox& r) {
      if (r.phase() != v1::STARTING) return false;
      transition(r, v1::FAILED, std::string("start failed: ") + e.what(), now_timestamp());
      return true;
    });
    throw;
  }
  spdlog::info("sandbox {} started again", s.sandbox_id());
  return store_.find(s.sandbox_id()).value_or(*starting);
}

std::vector<v1::LogLine> Sandboxes::logs(const std::string& ref, size_t tail, const std::string& stream, int64_t since_ms) {
  if (since_ms <= 0) return store_.logs(get(ref).sandbox_id(), tail, stream);
  // The store keeps lines in arrival order; those since the time, then the last `tail` of them.
  auto all = store_.logs(get(ref).sandbox_id(), kMaxLogScan, stream);
  std::erase_if(all, [&](const v1::LogLine& l) { return to_millis(l.at()) < since_ms; });
  if (all.size() > tail) all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(tail));
  return all;
}

void Sandboxes::place(const std::string& id) {
  auto s = store_.find(id);
  if (!s || s->phase() != v1::PENDING) return;  // deleted meanwhile, or already placed
  v1::PlaceRequest req;
  req.set_sandbox_id(id);
  *req.mutable_spec() = s->spec();
  try {
    if (defaults_.nats_creds) req.set_nats_creds(defaults_.nats_creds(id));
    // Version 1 of the sandbox's policy, which its supervisor watches for changes. Stored before
    // the workload exists, so the supervisor always finds it. Idempotent: a retried placement
    // stores the same text again and policy-service answers "unchanged".
    v1::PolicySetRequest pol;
    pol.set_sandbox_id(id);
    pol.set_yaml(s->spec().policy().empty() ? "version: 1\n" : s->spec().policy());
    pol.set_filename("policy");
    pol.set_author("gateway-api");
    pol.set_reason("sandbox created");
    cp_.policy_set(pol);
    auto reply = cp_.place(req);
    // The reply carries what the scheduler and driver also report on the bus; applying it here
    // makes READY independent of which path arrives first (reports are idempotent).
    modify(id, [&](v1::Sandbox& r) {
      auto now = now_timestamp();
      v1::StateReport rep;
      rep.set_sandbox_id(id);
      rep.set_driver_id(reply.driver_id());
      rep.set_workload_id(reply.workload_id());
      rep.set_kind(v1::REPORT_SCHEDULED);
      bool changed = apply_report(r, rep, now);
      rep.set_kind(v1::REPORT_WORKLOAD_RUNNING);
      return apply_report(r, rep, now) || changed;
    });
  } catch (const Error& e) {
    spdlog::warn("sandbox {}: placement failed: {}", id, e.what());
    modify(id, [&](v1::Sandbox& r) {
      if (r.phase() != v1::PENDING && r.phase() != v1::SCHEDULED) return false;
      transition(r, v1::FAILED, e.what(), now_timestamp());
      return true;
    });
  }
}

void Sandboxes::destroy(const std::string& id) {
  auto s = store_.find(id);
  if (!s || s->phase() != v1::STOPPING) return;
  std::string reason = "deleted";
  if (!s->driver_id().empty()) {
    try {
      cp_.delete_workload(s->driver_id(), id);
    } catch (const DriverAway&) {
      // The driver is gone: it reports the workload when it comes back, and is told to remove it.
      reason = "deleted; driver " + s->driver_id() + " was unreachable and removes the workload when it reconciles";
    } catch (const Error& e) {
      spdlog::warn("sandbox {}: delete on {} failed, will retry: {}", id, s->driver_id(), e.what());
      modify(id, [&](v1::Sandbox& r) {
        r.set_reason(std::string("delete failed, retrying: ") + e.what());
        *r.mutable_updated_at() = now_timestamp();
        return true;
      });
      return;
    }
  }
  modify(id, [&](v1::Sandbox& r) {
    if (r.phase() != v1::STOPPING) return false;
    r.set_workload_running(false);
    transition(r, v1::DELETED, reason, now_timestamp());
    return true;
  });
  spdlog::info("sandbox {} deleted", id);
}

void Sandboxes::on_report(const v1::StateReport& r) {
  auto after = modify(r.sandbox_id(), [&](v1::Sandbox& s) { return apply_report(s, r, now_timestamp()); });
  if (needs_cleanup(after ? &*after : nullptr, r)) {
    spdlog::info("driver {} reports a workload for {} sandbox {}: deleting it", r.driver_id(),
                 after ? "deleted" : "unknown", r.sandbox_id());
    std::string driver = r.driver_id(), id = r.sandbox_id();
    work_.post([this, driver, id] {
      try {
        cp_.delete_workload(driver, id);
      } catch (const Error& e) {
        spdlog::warn("cleanup of {} on {} failed: {}", id, driver, e.what());
      }
    });
  }
}

void Sandboxes::on_log(const v1::LogLine& line, uint64_t seq) {
  auto s = store_.find(line.sandbox_id());
  if (!s) return;
  store_.append_log(line, seq);
  count_denial(line);  // bulwark_denials_total: the sandboxes' confinement decisions
  // Live streams: a redelivered line (seq seen) was stored once and is sent once.
  uint64_t last = last_log_seq_.load();
  while (seq > last && !last_log_seq_.compare_exchange_weak(last, seq)) {
  }
  if (seq != 0 && seq <= last) return;
  watchers_.publish(log_event(line, s->owner()));
  if (auto d = denial_event(line, s->owner())) watchers_.publish(*d);
}

std::optional<v1::Sandbox> Sandboxes::modify(const std::string& id, const std::function<bool(v1::Sandbox&)>& fn) {
  v1::SandboxPhase before = v1::PHASE_UNSPECIFIED;
  auto after = store_.modify(id, [&](v1::Sandbox& r) {
    before = r.phase();
    return fn(r);
  });
  // Every phase change passes here: the events stream sees each one.
  if (after && after->phase() != before) watchers_.publish(phase_event(*after, before));
  return after;
}

void Sandboxes::resume() {
  for (const auto& s : store_.in_phases({v1::PENDING})) {
    std::string id = s.sandbox_id();
    work_.post([this, id] { place(id); });
  }
  for (const auto& s : store_.in_phases({v1::STOPPING})) {
    std::string id = s.sandbox_id();
    work_.post([this, id] { destroy(id); });
  }
}

void Sandboxes::sweep() {
  auto now = now_timestamp();
  for (const auto& s : store_.in_phases({v1::PENDING, v1::SCHEDULED, v1::STARTING})) {
    modify(s.sandbox_id(), [&](v1::Sandbox& r) { return expire_if_stuck(r, defaults_.start_timeout, now); });
  }
  for (const auto& s : store_.in_phases({v1::STOPPING})) {
    if (to_millis(now) - to_millis(s.updated_at()) >= defaults_.delete_retry.count()) {
      std::string id = s.sandbox_id();
      work_.post([this, id] { destroy(id); });
    }
  }
}

v1::PolicyWriteReply Sandboxes::policy_set(const std::string& id_or_name, v1::PolicySetRequest req) {
  req.set_sandbox_id(get(id_or_name).sandbox_id());
  if (req.yaml().empty()) throw Error(Code::kInvalidArgument, "yaml: required (the policy YAML)", "yaml");
  return cp_.policy_set(req);
}

v1::PolicyWriteReply Sandboxes::policy_update(const std::string& id_or_name, v1::PolicyUpdateRequest req) {
  req.set_sandbox_id(get(id_or_name).sandbox_id());
  if (req.operations().empty()) throw Error(Code::kInvalidArgument, "operations: at least one is required", "operations");
  return cp_.policy_update(req);
}

v1::PolicyRecord Sandboxes::policy_get(const std::string& id_or_name, uint64_t version) {
  v1::PolicyGetRequest req;
  req.set_sandbox_id(get(id_or_name).sandbox_id());
  req.set_version(version);
  return cp_.policy_get(req);
}

v1::PolicyListReply Sandboxes::policy_list(const std::string& id_or_name) {
  v1::PolicyListRequest req;
  req.set_sandbox_id(get(id_or_name).sandbox_id());
  return cp_.policy_list(req);
}

v1::PolicyValidateReply Sandboxes::policy_validate(v1::PolicyValidateRequest req) {
  if (!req.sandbox_id().empty()) req.set_sandbox_id(get(req.sandbox_id()).sandbox_id());
  return cp_.policy_validate(req);
}

}  // namespace bulwark::gateway
