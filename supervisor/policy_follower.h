#pragma once
// Hot reload: follows the sandbox's key in the JetStream KV bucket `policies` (written by
// policy-service), compiles each new version, hands it to the proxy in one atomic swap, and
// acknowledges on bulwark.policy.ack.<sandbox_id> the version it now enforces (or why it could
// not apply one). A KV watch survives reconnects and starts with the current value, so a
// supervisor that was cut off enforces the latest version as soon as it is back.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "shared/bus.h"
#include "shared/policy.h"
#include "shared/policy_engine.h"

namespace bulwark::supervisor {

// Pure: what to do with one stored version. Throws bulwark::Error when it cannot be enforced (bad
// record, bad YAML, static sections differ from what the sandbox started with).
struct NextPolicy {
  uint64_t version = 0;
  std::shared_ptr<const policy::CompiledPolicy> compiled;
};
NextPolicy prepare_policy_version(const std::string& record_bytes, const std::string& sandbox_id,
                                  const policy::Policy& started_with);

class PolicyFollower {
 public:
  using Apply = std::function<void(std::shared_ptr<const policy::CompiledPolicy>, uint64_t version)>;
  // started_with: the policy the sandbox was confined with (its static sections never change).
  PolicyFollower(Bus& bus, std::string sandbox_id, policy::Policy started_with, Apply apply);
  ~PolicyFollower();
  PolicyFollower(const PolicyFollower&) = delete;
  PolicyFollower& operator=(const PolicyFollower&) = delete;

  uint64_t version() const { return version_; }

 private:
  void loop();
  void ack(uint64_t failed_version, const std::string& error);

  Bus& bus_;
  std::string sandbox_id_;
  policy::Policy started_with_;
  Apply apply_;
  std::atomic<uint64_t> version_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace bulwark::supervisor
