#pragma once
// What every compute driver does the same way, whatever its backend: serve the contract on
// bulwark.driver.<driver_id>.<op> (docs/drivers.md), heartbeat capacity, reconcile at start and
// then on every poll (report each workload change once: RUNNING, EXITED with its code, GONE), and
// announce draining on stop. A driver is a DriverBackend (talks to Docker, Podman, Kubernetes,
// QEMU...) handed to a DriverHost; nothing else differs between drivers.
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/v1/driver.pb.h"
#include "shared/bus.h"
#include "shared/service.h"
#include "shared/work_queue.h"

namespace bulwark {

// The backend half of a driver. Calls come from several worker threads at once; a backend keeps
// no state of its own that a restart would lose (it finds its workloads by label/annotation).
// Errors are bulwark::Error with the field a user must change.
class DriverBackend {
 public:
  virtual ~DriverBackend() = default;
  // Fills what the backend supports; the host sets driver_id, kind and version.
  virtual void capabilities(v1::DriverCapabilities& caps) const = 0;
  // Throws when create would refuse the spec (image missing, GPUs without GPU support, ...);
  // returns warnings (e.g. a limit the backend rounds).
  virtual std::vector<std::string> validate(const v1::SandboxSpec& spec) = 0;
  // Creates and starts the workload. Idempotent: an existing workload for the sandbox is
  // adopted (started if it was only created) and returned with adopted = true.
  virtual v1::DriverCreateReply create(const std::string& sandbox_id, const v1::SandboxSpec& spec) = 0;
  // Stops and removes; false when there was nothing.
  virtual bool remove(const std::string& sandbox_id) = 0;
  // Stops, keeping the workload for start; false when there was nothing.
  virtual bool stop(const std::string& sandbox_id, std::chrono::milliseconds grace) = 0;
  // Starts a stopped workload again; returns its workload id. Error kNotFound when none.
  virtual std::string start(const std::string& sandbox_id) = 0;
  // The workload of one sandbox, or nothing.
  virtual std::optional<v1::WorkloadStatus> get(const std::string& sandbox_id) = 0;
  // Every workload this driver owns, in every state (sandbox_id set on each).
  virtual std::vector<v1::WorkloadStatus> list() = 0;
  // GPUs not in use (for the heartbeat); 0 for backends without GPUs.
  virtual uint32_t gpus_free() { return 0; }
};

struct DriverHostOptions {
  std::string driver_id;  // a NATS subject token
  std::string kind;       // "docker", "podman", "kubernetes", "vm"
  uint32_t capacity = 16;
  std::map<std::string, std::string> labels;  // heartbeat labels (placement by driver_selector)
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds poll{1000};
  std::chrono::milliseconds default_grace{10000};
  size_t workers = 4;
};

class DriverHost : public Component {
 public:
  // Reconciles (one poll) before the first heartbeat, so a restarted driver reports what it owns
  // before the scheduler places anything new on it.
  DriverHost(Bus& bus, std::unique_ptr<DriverBackend> backend, DriverHostOptions o);
  ~DriverHost() override;
  void stop() override;

  // The contract, callable directly (tests) as well as over NATS.
  v1::DriverCapabilities capabilities() const;
  v1::DriverValidateReply validate(const v1::DriverValidateRequest& req);
  v1::DriverCreateReply create(const v1::DriverCreateRequest& req);
  v1::DriverDeleteReply remove(const v1::DriverDeleteRequest& req);
  v1::DriverStopReply stop_workload(const v1::DriverStopRequest& req);
  v1::DriverStartReply start_workload(const v1::DriverStartRequest& req);
  v1::WorkloadStatus get(const v1::DriverGetRequest& req);
  v1::DriverListReply list();
  void poll();  // one reconcile pass: report every change since the last pass

  DriverBackend& backend() { return *backend_; }

 private:
  template <class Req, class Rep>
  void serve_async(const std::string& op, std::function<Rep(const Req&)> fn);
  void heartbeat(bool draining);
  // `at`: when the state was seen (default: now); the gateway drops reports older than its last start.
  void report(const std::string& sandbox_id, v1::ReportKind kind, const std::string& workload_id, int exit_code,
              const std::string& reason = {}, const google::protobuf::Timestamp* at = nullptr);
  void remember(const v1::WorkloadStatus& st);
  // Reports what st changes since the last report (RUNNING, EXITED) and remembers it; call with
  // transition_mu_ held. A failed report leaves the last state, so the next poll tries again.
  void report_change(const v1::WorkloadStatus& st, const google::protobuf::Timestamp* at = nullptr);
  // A create, stop, start or remove under way for a sandbox (RAII): polls leave it alone until
  // the call has reported, and a poll whose list is older than the call's end as well.
  class Call;
  bool busy(const std::string& sandbox_id, std::chrono::steady_clock::time_point listed_at);  // mu_ held

  Bus& bus_;
  std::unique_ptr<DriverBackend> backend_;
  DriverHostOptions o_;
  // Held from deciding a change to publishing its report, by the poll and by create/stop/start/
  // remove: so a poll and a stop cannot both report one exit.
  std::mutex transition_mu_;
  std::mutex mu_;
  std::map<std::string, v1::WorkloadStatus> known_;  // sandbox_id -> last reported state
  std::map<std::string, int> in_call_;               // sandbox_id -> calls under way (Call)
  // sandbox_id -> when its last call ended: a poll whose list is older says nothing about it.
  std::map<std::string, std::chrono::steady_clock::time_point> touched_;
  std::condition_variable cv_;
  bool stopping_ = false;
  WorkQueue work_;
  std::thread ticker_;
  std::vector<Subscription> subs_;
};

// What every driver's main() does the same way.
// Lower-cases a --driver-id and checks it is a subject token; throws a flag error otherwise.
std::string normalize_driver_id(std::string id);
// The bundle scripts/bundle-supervisor writes beside the binaries (<bindir>/supervisor-bundle).
// What a container engine (podman, docker) offers every sandbox: container isolation, GPUs by
// device request, stop/start that keeps the filesystem, a TTY, cpu/memory/pids limits.
void set_container_capabilities(v1::DriverCapabilities& caps);

std::string default_supervisor_bundle();
// Throws kFailedPrecondition saying how to get one when dir holds no bin/bulwark-supervisor.
void check_supervisor_bundle(const std::string& dir);
// Landlock reports denials only through kernel audit, which a workload cannot switch on (it needs
// the host's PID namespace): a driver on the same kernel does it for its sandboxes. Warns when it
// cannot.
void enable_kernel_audit();
// ["k=v", ...] -> {k: v}; throws invalid_argument naming flag for an entry without '=' or key.
std::map<std::string, std::string> parse_labels(const std::vector<std::string>& pairs, const std::string& flag);

}  // namespace bulwark
