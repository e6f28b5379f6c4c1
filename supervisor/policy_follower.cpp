#include "supervisor/policy_follower.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "bulwark/v1/policy.pb.h"
#include "shared/subjects.h"

namespace bulwark::supervisor {

NextPolicy prepare_policy_version(const std::string& record_bytes, const std::string& sandbox_id,
                                  const policy::Policy& started_with) {
  v1::PolicyRecord r;
  if (!r.ParseFromString(record_bytes) || r.version() == 0)
    throw Error(Code::kInvalidArgument, "the stored policy record is malformed");
  if (r.sandbox_id() != sandbox_id)
    throw Error(Code::kInvalidArgument, "the stored policy belongs to sandbox " + r.sandbox_id());
  policy::Policy p = policy::parse_policy(r.yaml(), "policy version " + std::to_string(r.version()));
  // policy-service refuses these already; the supervisor does not trust the store to have done so.
  if (auto changed = policy::changed_static_sections(started_with, p); !changed.empty())
    throw Error(Code::kFailedPrecondition, changed.front() + " differs from the policy the sandbox started with");
  return NextPolicy{r.version(), policy::CompiledPolicy::compile(p)};
}

PolicyFollower::PolicyFollower(Bus& bus, std::string sandbox_id, policy::Policy started_with, Apply apply)
    : bus_(bus), sandbox_id_(std::move(sandbox_id)), started_with_(std::move(started_with)), apply_(std::move(apply)) {
  thread_ = std::thread([this] { loop(); });
}

PolicyFollower::~PolicyFollower() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void PolicyFollower::ack(uint64_t failed_version, const std::string& error) {
  v1::PolicyAck a;
  a.set_sandbox_id(sandbox_id_);
  a.set_version(version_);
  a.set_failed_version(failed_version);
  a.set_error(error);
  a.set_at_ms(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  try {
    bus_.publish(subjects::policy_ack(sandbox_id_), a);
  } catch (const std::exception& e) {
    spdlog::warn("policy: cannot acknowledge version {}: {}", version_.load(), e.what());
  }
}

void PolicyFollower::loop() {
  // The bucket may not exist yet (policy-service starts it): retry until it does.
  std::optional<KvWatcher> watcher;
  while (!stop_ && !watcher) {
    try {
      auto kv = bus_.key_value({.bucket = subjects::kPolicyBucket, .description = "", .history = 1});
      watcher.emplace(kv.watch(sandbox_id_));
    } catch (const std::exception& e) {
      spdlog::debug("policy: cannot watch {} yet: {}", subjects::kPolicyBucket, e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  while (!stop_) {
    std::optional<KvEntry> e;
    try {
      e = watcher->next(std::chrono::milliseconds(250));
    } catch (const std::exception& ex) {
      spdlog::warn("policy: watch failed: {}", ex.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    if (!e || e->deleted) continue;
    try {
      auto next = prepare_policy_version(e->value, sandbox_id_, started_with_);
      if (next.version <= version_) {
        ack(0, "");  // a redelivery after reconnecting: say again what is enforced
        continue;
      }
      apply_(next.compiled, next.version);
      version_ = next.version;
      spdlog::info("policy: now enforcing version {}", next.version);
      ack(0, "");
    } catch (const std::exception& ex) {
      v1::PolicyRecord r;
      uint64_t failed = r.ParseFromString(e->value) ? r.version() : 0;
      spdlog::error("policy: cannot apply version {}: {} (still enforcing version {})", failed, ex.what(), version_.load());
      ack(failed, ex.what());
    }
  }
}

}  // namespace bulwark::supervisor
