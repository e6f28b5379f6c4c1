#pragma once
// The gateway's sandbox operations: validates requests, owns the records (through Store), starts
// placement and deletion on worker threads, and folds the reports of other services into the
// lifecycle. It reaches other services only through ControlPlane, so it is tested without NATS.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "bulwark/v1/driver.pb.h"
#include "bulwark/v1/policy.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "services/gateway-api/paging.h"
#include "services/gateway-api/store.h"
#include "services/gateway-api/watch.h"
#include "shared/error.h"
#include "shared/work_queue.h"

namespace bulwark::gateway {

// A driver does not answer at all (not running): its workloads are cleaned when it comes back.
class DriverAway : public Error {
 public:
  explicit DriverAway(const std::string& driver_id) : Error(Code::kUnavailable, "driver " + driver_id + " is not running") {}
};

// What the gateway asks of the rest of the suite. Errors are thrown as bulwark::Error.
class ControlPlane {
 public:
  virtual ~ControlPlane() = default;
  virtual v1::PlaceReply place(const v1::PlaceRequest& req) = 0;
  virtual void delete_workload(const std::string& driver_id, const std::string& sandbox_id) = 0;
  // Stop keeps the workload (and its files) for start; both throw DriverAway when nobody answers.
  virtual void stop_workload(const std::string& driver_id, const std::string& sandbox_id,
                             std::chrono::milliseconds grace) = 0;
  virtual void start_workload(const std::string& driver_id, const std::string& sandbox_id) = 0;
  // policy-service (services/policy-service/README.md): the gateway stores each sandbox's policy
  // there as version 1 before placing it, and relays the REST policy operations.
  virtual v1::PolicyWriteReply policy_set(const v1::PolicySetRequest& req) = 0;
  virtual v1::PolicyWriteReply policy_update(const v1::PolicyUpdateRequest& req) = 0;
  virtual v1::PolicyRecord policy_get(const v1::PolicyGetRequest& req) = 0;
  virtual v1::PolicyListReply policy_list(const v1::PolicyListRequest& req) = 0;
  virtual v1::PolicyValidateReply policy_validate(const v1::PolicyValidateRequest& req) = 0;
};

struct SandboxDefaults {
  std::string image = "localhost/bulwark/base:latest";
  std::vector<std::string> command = {"sleep", "infinity"};
  std::chrono::milliseconds start_timeout{120000};   // PENDING/SCHEDULED/STARTING longer than this fail
  std::chrono::milliseconds delete_retry{10000};     // a failed delete is retried this often
  // Mints the NATS credentials of a sandbox's supervisor (a .creds file's text); unset = none
  // (NATS without auth). Holds the account's signing key, which never leaves the gateway.
  std::function<std::string(const std::string& sandbox_id)> nats_creds;
};

// Fills defaults and rejects what cannot run, naming the field. Pure.
void normalize_spec(v1::SandboxSpec& spec, const SandboxDefaults& d);

class Sandboxes {
 public:
  Sandboxes(Store& store, ControlPlane& cp, SandboxDefaults defaults);
  ~Sandboxes();

  // owner: the token_id of the caller (authz.h), kept in the record.
  v1::Sandbox create(v1::SandboxSpec spec, const std::string& idempotency_key, bool* created, const std::string& owner = {});
  v1::Sandbox get(const std::string& id_or_name);  // Error(kNotFound) when unknown
  std::vector<v1::Sandbox> list(bool include_deleted);
  // One page (paging.h): page_token "" for the first. Error names field page_token when the token
  // is malformed or was made for another filter.
  v1::ListSandboxesReply list(const SandboxFilter& f, const std::string& page_token, size_t limit);
  v1::Sandbox remove(const std::string& id_or_name);
  // stop: READY/EXITED -> STOPPED once the driver stopped the workload (SIGTERM, grace, SIGKILL).
  // start: STOPPED/EXITED -> STARTING, then READY when the new run checks in. Error
  // failed_precondition (field phase) from any other phase.
  v1::Sandbox stop(const std::string& id_or_name, std::chrono::milliseconds grace);
  v1::Sandbox start(const std::string& id_or_name);
  // The last `tail` lines of one stream ("" = all), of those at or after since_ms (0 = all).
  std::vector<v1::LogLine> logs(const std::string& id_or_name, size_t tail, const std::string& stream = "",
                                int64_t since_ms = 0);

  // The sandbox's policy, by id or name (policy-service holds the versions).
  v1::PolicyWriteReply policy_set(const std::string& id_or_name, v1::PolicySetRequest req);
  v1::PolicyWriteReply policy_update(const std::string& id_or_name, v1::PolicyUpdateRequest req);
  v1::PolicyRecord policy_get(const std::string& id_or_name, uint64_t version);
  v1::PolicyListReply policy_list(const std::string& id_or_name);
  v1::PolicyValidateReply policy_validate(v1::PolicyValidateRequest req);

  void on_report(const v1::StateReport& r);
  void on_log(const v1::LogLine& line, uint64_t stream_seq);
  // After a restart: place what is still PENDING, delete what is STOPPING.
  void resume();
  // Periodic: time out stuck sandboxes, retry stalled deletes.
  void sweep();
  void shutdown() { work_.shutdown(); }
  // Runs (on a worker) for each sandbox whose deletion was requested: its inference routes go too.
  // Set before the first request.
  void on_removed(std::function<void(const std::string& sandbox_id)> fn) { removed_ = std::move(fn); }
  // Phase changes and log lines (denials among them) as they are folded in: GET /v1/events and
  // logs?follow=true (watch.h).
  Watchers& watchers() { return watchers_; }

 private:
  void place(const std::string& sandbox_id);
  void destroy(const std::string& sandbox_id);
  // store_.modify, publishing the phase change when there is one.
  std::optional<v1::Sandbox> modify(const std::string& sandbox_id, const std::function<bool(v1::Sandbox&)>& fn);

  Store& store_;
  ControlPlane& cp_;
  SandboxDefaults defaults_;
  std::function<void(const std::string&)> removed_;
  Watchers watchers_;
  std::atomic<uint64_t> last_log_seq_{0};
  WorkQueue work_;
};

}  // namespace bulwark::gateway
