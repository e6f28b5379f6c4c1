#include "services/policy-service/api.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "services/policy-service/merge.h"
#include "shared/metrics.h"
#include "shared/subjects.h"

namespace bulwark::policy_service {
namespace {

// Forgets the wait unless it was armed: a write that throws leaves no waiter behind.
class Ticket {
 public:
  explicit Ticket(AckTracker& acks) : acks_(acks) {}
  ~Ticket() {
    if (id_) acks_.forget(id_);
  }
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  void expect(const std::string& sandbox_id) { id_ = acks_.expect(sandbox_id); }
  uint64_t take() { return std::exchange(id_, 0); }
  explicit operator bool() const { return id_ != 0; }

 private:
  AckTracker& acks_;
  uint64_t id_ = 0;
};

// A stored version, parsed for the static-section check.
policy::Policy parse_stored(const v1::PolicyRecord& r) {
  const std::string label = "sandbox " + r.sandbox_id() + " version " + std::to_string(r.version());
  try {
    return policy::parse_policy(r.yaml(), label);
  } catch (const policy::PolicyInvalid& e) {
    // Only if validation got stricter since it was stored: its static sections cannot be compared.
    std::string msg = label + " no longer passes validation, so its static sections cannot be compared: ";
    for (size_t i = 0; i < e.problems.size(); ++i) msg += (i ? "; " : "") + e.problems[i].to_string();
    throw Error(Code::kFailedPrecondition, msg, "sandbox_id");
  }
}

// Prometheus (docs/observability.md). Per-sandbox versions would make one series per sandbox: the
// count of versions stored stands in for them.
metrics::Family<metrics::Counter>& requests_total() {
  static auto& f = metrics::registry().counter(
      "bulwark_policy_requests_total", "Policy requests handled, by op (set, update, get, list, validate) and result.",
      {"op", "result"});
  return f;
}
metrics::Family<metrics::Histogram>& request_seconds() {
  static auto& f = metrics::registry().histogram(
      "bulwark_policy_request_duration_seconds", "Time to handle a policy request (a --wait write: until stored, not acked).",
      {"op"});
  return f;
}
metrics::Family<metrics::Counter>& validation_failures() {
  static auto& f = metrics::registry().counter(
      "bulwark_policy_validation_failures_total", "Policies refused by validation, by op (set, update, validate).", {"op"});
  return f;
}

// parse_or_throw, counting the refusal.
policy::Policy validated(const std::string& op, const std::string& yaml, const std::string& filename,
                         const std::string& field) {
  try {
    return parse_or_throw(yaml, filename, field);
  } catch (const Error&) {
    validation_failures().with({op}).inc();
    throw;
  }
}

template <class Req>
Req parse_request(const Msg& m) {
  Req req;
  if (!req.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())))
    throw Error(Code::kInvalidArgument,
                "request on " + std::string(m.subject()) + " is not a valid " + req.GetTypeName());
  return req;
}

}  // namespace

// ---- AckTracker ----

AckTracker::AckTracker(Bus& bus) {
  const size_t prefix = subjects::policy_ack("").size();
  sub_ = bus.subscribe(subjects::kPolicyAcks, [this, prefix](Msg& m) {
    v1::PolicyAck ack;
    if (!ack.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) {
      spdlog::warn("ignoring a malformed PolicyAck on {}", m.subject());
      return;
    }
    // A supervisor may speak only for its own sandbox (its NATS user may publish only there).
    if (m.subject().substr(prefix) != ack.sandbox_id()) {
      spdlog::warn("ignoring a PolicyAck for sandbox '{}' sent on {}", ack.sandbox_id(), m.subject());
      return;
    }
    observe(ack);
  });
  bus.flush();
  timer_ = std::thread([this] { timer_loop(); });  // last: nothing after it may throw
}

AckTracker::~AckTracker() { stop(); }

uint64_t AckTracker::expect(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  uint64_t id = next_ticket_++;
  waiters_[id].sandbox_id = sandbox_id;
  return id;
}

void AckTracker::forget(uint64_t ticket) {
  std::lock_guard lock(mu_);
  waiters_.erase(ticket);
}

uint64_t AckTracker::last_acked_locked(const std::string& sandbox_id) const {
  auto it = last_acked_.find(sandbox_id);
  return it == last_acked_.end() ? 0 : it->second;
}

uint64_t AckTracker::last_acked(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  return last_acked_locked(sandbox_id);
}

std::optional<AckTracker::Outcome> AckTracker::settled(const Waiter& w) const {
  uint64_t acked = std::max(w.seen, last_acked_locked(w.sandbox_id));
  if (acked >= w.version) return Outcome{true, acked, ""};
  if (w.failed >= w.version && !w.error.empty()) return Outcome{false, acked, w.error};
  return std::nullopt;
}

AckTracker::Outcome AckTracker::timed_out(const Waiter& w) const {
  return Outcome{false, std::max(w.seen, last_acked_locked(w.sandbox_id)), ""};
}

void AckTracker::arm(uint64_t ticket, uint64_t version, std::chrono::milliseconds wait, Done done) {
  std::optional<Outcome> now;
  {
    std::lock_guard lock(mu_);
    auto it = waiters_.find(ticket);
    if (it == waiters_.end()) throw Error(Code::kInternal, "ack wait armed without expect()");
    Waiter& w = it->second;
    w.version = version;
    w.deadline = Clock::now() + wait;
    now = stopping_ ? timed_out(w) : settled(w);
    if (now)
      waiters_.erase(it);
    else
      w.done = std::move(done);
  }
  if (now)
    done(*now);
  else
    cv_.notify_all();
}

void AckTracker::observe(const v1::PolicyAck& ack) {
  std::vector<std::pair<Done, Outcome>> finished;
  {
    std::lock_guard lock(mu_);
    // One entry per sandbox that ever acked; start over rather than grow without bound (an
    // entry only improves acked_version in replies, the waiters keep their own).
    if (last_acked_.size() >= 100000 && !last_acked_.count(ack.sandbox_id())) last_acked_.clear();
    uint64_t& last = last_acked_[ack.sandbox_id()];
    last = std::max(last, ack.version());
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      Waiter& w = it->second;
      if (w.sandbox_id == ack.sandbox_id()) {
        w.seen = std::max(w.seen, ack.version());
        if (!ack.error().empty() && ack.failed_version() >= w.failed) {
          w.failed = ack.failed_version();
          w.error = ack.error();
        }
        if (w.done)
          if (auto o = settled(w)) {
            finished.emplace_back(std::move(w.done), *o);
            it = waiters_.erase(it);
            continue;
          }
      }
      ++it;
    }
  }
  for (auto& [done, o] : finished) done(o);
}

void AckTracker::timer_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto next = Clock::time_point::max();
    for (const auto& [id, w] : waiters_)
      if (w.done) next = std::min(next, w.deadline);
    if (next == Clock::time_point::max())
      cv_.wait(lock);
    else
      cv_.wait_until(lock, next);
    if (stopping_) break;
    std::vector<std::pair<Done, Outcome>> finished;
    auto now = Clock::now();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.done && it->second.deadline <= now) {
        finished.emplace_back(std::move(it->second.done), timed_out(it->second));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    if (finished.empty()) continue;
    lock.unlock();
    for (auto& [done, o] : finished) done(o);
    lock.lock();
  }
}

void AckTracker::stop() {
  std::vector<std::pair<Done, Outcome>> finished;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.done) {
        finished.emplace_back(std::move(it->second.done), timed_out(it->second));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  for (auto& [done, o] : finished) done(o);
}

// ---- PolicyApi ----

PolicyApi::PolicyApi(Bus& bus, ApiOptions o)
    : bus_(bus), o_(o), store_(bus, o.store), acks_(bus), work_(static_cast<size_t>(o.workers), "policy") {
  // One queue subscription for every op, so that an unknown op gets an answer saying so instead of
  // "no responders". KV calls and waits must not hold the delivery thread: hand each to a worker.
  requests_ = bus_.queue_subscribe(subjects::kPolicyRequests, subjects::kPolicyQueue, [this](Msg& m) {
    if (stopping_) {
      bus_.respond_error(m, Error(Code::kUnavailable, "policy-service is stopping: retry"));
      return;
    }
    auto owned = std::make_shared<Msg>(std::move(m));
    work_.post([this, owned] {
      std::string op(owned->subject().substr(subjects::policy_op("").size()));
      if (op != "set" && op != "update" && op != "get" && op != "list" && op != "validate") op = "unknown";  // bounded labels
      bus_.reply_with(*owned, [&] { metrics::observe(requests_total(), request_seconds(), {op}, [&] { handle(owned); }); });
    });
  });
  bus_.flush();
}

PolicyApi::~PolicyApi() { stop(); }

void PolicyApi::stop() {
  stopping_ = true;
  work_.shutdown();
  acks_.stop();  // waiting writes get their reply now: stored, not acknowledged
}

void PolicyApi::check_wait(uint32_t wait_ms) const {
  if (std::chrono::milliseconds(wait_ms) > o_.max_wait)
    throw Error(Code::kInvalidArgument,
                "wait_ms must be at most " + std::to_string(o_.max_wait.count()) + " (this service's --max-wait)",
                "wait_ms");
}

void PolicyApi::handle(const std::shared_ptr<Msg>& m) {
  const std::string subject(m->subject());
  const std::string op = subject.substr(subjects::policy_op("").size());
  if (op == "set") {
    auto req = parse_request<v1::PolicySetRequest>(*m);
    check_sandbox_id(req.sandbox_id());
    check_wait(req.wait_ms());
    const std::string filename = req.filename().empty() ? "policy.yaml" : req.filename();
    // Validate before touching the store: a bad policy costs no KV call.
    const policy::Policy next_policy = validated("set", req.yaml(), filename, "yaml");
    write(
        m, req.sandbox_id(), req.wait_ms(),
        [&](const v1::PolicyRecord* latest) {
          if (latest) check_static_sections(parse_stored(*latest), next_policy);
          return req.yaml();
        },
        req.author(), req.reason());
  } else if (op == "update") {
    auto req = parse_request<v1::PolicyUpdateRequest>(*m);
    check_sandbox_id(req.sandbox_id());
    check_wait(req.wait_ms());
    if (req.operations().empty())
      throw Error(Code::kInvalidArgument, "operations: give at least one operation", "operations");
    auto next_yaml = [&](const v1::PolicyRecord* latest) {
          if (!latest)
            throw Error(Code::kNotFound,
                        "sandbox " + req.sandbox_id() +
                            " has no policy to update: set one first (the gateway sets version 1 when it creates "
                            "the sandbox)",
                        "sandbox_id");
          std::string yaml = apply_operations(latest->yaml(), req.operations());
          // Problems point into the merged text: the paths say where.
          auto next = validated(
              "update", yaml, "sandbox " + req.sandbox_id() + " version " + std::to_string(latest->version() + 1) + " (updated)",
              "operations");
          check_static_sections(parse_stored(*latest), next);
          return yaml;
        };
    if (req.dry_run()) {
      auto latest = store_.latest(req.sandbox_id());
      v1::PolicyWriteReply reply;
      reply.set_sandbox_id(req.sandbox_id());
      reply.set_yaml(next_yaml(latest ? &*latest : nullptr));
      reply.set_version(latest ? latest->version() : 0);
      bus_.respond(*m, reply);
      return;
    }
    write(m, req.sandbox_id(), req.wait_ms(), next_yaml, req.author(), req.reason());
  } else if (op == "get") {
    bus_.respond(*m, get(parse_request<v1::PolicyGetRequest>(*m)));
  } else if (op == "list") {
    bus_.respond(*m, list(parse_request<v1::PolicyListRequest>(*m)));
  } else if (op == "validate") {
    bus_.respond(*m, validate(parse_request<v1::PolicyValidateRequest>(*m)));
  } else {
    throw Error(Code::kInvalidArgument,
                "unknown policy operation '" + op + "' (" + subject + "): use set, update, get, list or validate",
                "op");
  }
}

void PolicyApi::write(const std::shared_ptr<Msg>& m, const std::string& sandbox_id, uint32_t wait_ms,
                      const NextYaml& next, const std::string& author, const std::string& reason) {
  // Registered before the KV write: an ack that comes before this thread gets to arm() still counts.
  Ticket ticket(acks_);
  if (wait_ms > 0) ticket.expect(sandbox_id);
  WriteResult r = store_.write(sandbox_id, next, author, reason);
  static auto& stored = metrics::registry().counter("bulwark_policy_versions_stored_total", "New policy versions written to the store.");
  if (r.changed) stored.get().inc();
  if (r.changed)
    spdlog::info("sandbox {}: policy version {} stored (sha256 {}, author '{}')", sandbox_id, r.record.version(),
                 r.record.sha256().substr(0, 12), author);
  v1::PolicyWriteReply reply;
  reply.set_sandbox_id(sandbox_id);
  reply.set_version(r.record.version());
  reply.set_sha256(r.record.sha256());
  reply.set_changed(r.changed);
  reply.set_acked_version(acks_.last_acked(sandbox_id));
  if (!ticket) {
    bus_.respond(*m, reply);
    return;
  }
  acks_.arm(ticket.take(), r.record.version(), std::chrono::milliseconds(wait_ms),
            [this, m, reply](const AckTracker::Outcome& o) mutable {
              reply.set_acknowledged(o.acknowledged);
              reply.set_acked_version(o.acked_version);
              reply.set_ack_error(o.error);
              try {
                bus_.respond(*m, reply);
              } catch (const std::exception& e) {
                spdlog::warn("sandbox {}: cannot send the reply for policy version {}: {}", reply.sandbox_id(),
                             reply.version(), e.what());
              }
            });
}

v1::PolicyRecord PolicyApi::get(const v1::PolicyGetRequest& req) {
  check_sandbox_id(req.sandbox_id());
  return store_.get(req.sandbox_id(), req.version());
}

v1::PolicyListReply PolicyApi::list(const v1::PolicyListRequest& req) {
  check_sandbox_id(req.sandbox_id());
  auto versions = store_.history(req.sandbox_id());
  if (versions.empty()) throw Error(Code::kNotFound, "sandbox " + req.sandbox_id() + " has no policy", "sandbox_id");
  const size_t limit = req.limit() == 0 || req.limit() > 1000 ? 1000 : req.limit();
  v1::PolicyListReply out;
  out.set_sandbox_id(req.sandbox_id());
  out.set_latest_version(versions.back().version());
  for (size_t i = versions.size() > limit ? versions.size() - limit : 0; i < versions.size(); ++i) {
    const auto& r = versions[i];
    auto* v = out.add_versions();
    v->set_version(r.version());
    v->set_sha256(r.sha256());
    v->set_created_at_ms(r.created_at_ms());
    v->set_size_bytes(static_cast<uint32_t>(r.yaml().size()));
    v->set_author(r.author());
    v->set_reason(r.reason());
  }
  return out;
}

v1::PolicyValidateReply PolicyApi::validate(const v1::PolicyValidateRequest& req) {
  const std::string filename = req.filename().empty() ? "policy.yaml" : req.filename();
  if (!req.sandbox_id().empty()) check_sandbox_id(req.sandbox_id());
  v1::PolicyValidateReply out;
  if (req.yaml().size() > kMaxYamlBytes) {
    *out.add_problems() = to_proto({filename, 1, 1, "",
                                    "the policy is " + std::to_string(req.yaml().size()) +
                                        " bytes; policy-service stores at most " + std::to_string(kMaxYamlBytes)});
    validation_failures().with({"validate"}).inc();
    return out;
  }
  try {
    auto p = policy::parse_policy(req.yaml(), filename);
    if (!req.sandbox_id().empty())
      if (auto live = store_.latest(req.sandbox_id()))
        for (const auto& problem : static_section_problems(parse_stored(*live), p, req.yaml(), filename))
          *out.add_problems() = to_proto(problem);
  } catch (const policy::PolicyInvalid& e) {
    for (const auto& problem : e.problems) *out.add_problems() = to_proto(problem);
  }
  out.set_valid(out.problems().empty());
  if (!out.valid()) validation_failures().with({"validate"}).inc();
  return out;
}

}  // namespace bulwark::policy_service
