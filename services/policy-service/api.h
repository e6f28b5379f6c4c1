#pragma once
// policy-service's NATS side: bulwark.policy.<op> (set, update, get, list, validate) in queue group
// `policy`, and the supervisors' acks on bulwark.policy.ack.<sandbox_id> for `--wait`.
// Requests run on a worker pool; a write that waits for an ack holds no thread while it waits.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "bulwark/v1/policy.pb.h"
#include "services/policy-service/store.h"
#include "shared/bus.h"
#include "shared/service.h"
#include "shared/work_queue.h"

namespace bulwark::policy_service {

// What supervisors acknowledged, and the writes waiting for an ack. Every replica sees every ack
// (a plain subscription, not a queue group), since the waiting write may be on any of them.
class AckTracker {
 public:
  struct Outcome {
    bool acknowledged = false;
    uint64_t acked_version = 0;  // newest version acknowledged, as far as this replica saw; 0 = none
    std::string error;           // the sandbox could not apply the version waited for
  };
  using Done = std::function<void(const Outcome&)>;

  // Subscribes to bulwark.policy.ack.* and flushes, so no ack sent after this returns is missed.
  explicit AckTracker(Bus& bus);
  ~AckTracker();
  AckTracker(const AckTracker&) = delete;
  AckTracker& operator=(const AckTracker&) = delete;

  // Call before the write: from now on the sandbox's acks count for this ticket.
  uint64_t expect(const std::string& sandbox_id);
  // After the write: done runs once, when the sandbox acknowledges version (or a later one),
  // reports it cannot apply it, or wait passes: on the ack or timer thread, or on the caller's at
  // once if that happened already.
  void arm(uint64_t ticket, uint64_t version, std::chrono::milliseconds wait, Done done);
  void forget(uint64_t ticket);  // the write failed: nobody waits
  void observe(const v1::PolicyAck& ack);
  uint64_t last_acked(const std::string& sandbox_id);  // 0 = no ack seen by this replica
  // Ends every wait now (as not acknowledged) and stops the timer; later arms complete at once.
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  struct Waiter {
    std::string sandbox_id;
    uint64_t seen = 0;  // newest version acked since expect()
    uint64_t failed = 0;
    std::string error;
    uint64_t version = 0;  // armed when done is set
    Clock::time_point deadline;
    Done done;
  };
  // The outcome if w is finished (acked or failed), else nullopt. Needs mu_.
  std::optional<Outcome> settled(const Waiter& w) const;
  Outcome timed_out(const Waiter& w) const;  // needs mu_
  uint64_t last_acked_locked(const std::string& sandbox_id) const;
  void timer_loop();

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t next_ticket_ = 1;
  std::map<uint64_t, Waiter> waiters_;
  std::unordered_map<std::string, uint64_t> last_acked_;  // bounded: see observe()
  std::thread timer_;
  Subscription sub_;  // last: unsubscribed first
};

struct ApiOptions {
  int workers = 8;                             // requests handled at once (waits hold none)
  std::chrono::milliseconds max_wait{300000};  // the largest wait_ms accepted
  StoreOptions store;
};

class PolicyApi : public Component {
 public:
  PolicyApi(Bus& bus, ApiOptions o);
  ~PolicyApi() override;
  void stop() override;

  // The read-only operations, callable directly.
  v1::PolicyRecord get(const v1::PolicyGetRequest& req);
  v1::PolicyListReply list(const v1::PolicyListRequest& req);
  v1::PolicyValidateReply validate(const v1::PolicyValidateRequest& req);

  PolicyStore& store() { return store_; }

 private:
  void handle(const std::shared_ptr<Msg>& m);
  // set and update: store the version next makes, then reply at once or once acked.
  void write(const std::shared_ptr<Msg>& m, const std::string& sandbox_id, uint32_t wait_ms, const NextYaml& next,
             const std::string& author, const std::string& reason);

  void check_wait(uint32_t wait_ms) const;

  Bus& bus_;
  ApiOptions o_;
  std::atomic<bool> stopping_{false};
  PolicyStore store_;
  AckTracker acks_;
  WorkQueue work_;
  Subscription requests_;  // last: unsubscribed first
};

}  // namespace bulwark::policy_service
