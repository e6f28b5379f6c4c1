#pragma once
// The versioned policy store, in two JetStream KV buckets (docs/architecture.md, "Policy storage"):
//   policies          key <sandbox_id>            the latest PolicyRecord; supervisors watch it
//   policy_versions   key <sandbox_id>.<version>  every PolicyRecord, written once
// Any number of policy-service replicas share them. A write commits with kvStore_Update on the
// revision it read (optimistic concurrency) and starts over on a conflict, so no update is lost.
// Before committing version N+1 a writer makes sure version N is in policy_versions, so the
// archive has no gaps even when a replica dies between its commit and its archive write.
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/v1/policy.pb.h"
#include "shared/bus.h"

namespace bulwark::policy_service {

struct StoreOptions {
  int replicas = 1;        // KV replicas: > 1 only on a NATS cluster
  int max_attempts = 100;  // commits lost to concurrent writers before giving up
};

// Decides the next policy text from the latest record (nullptr: the sandbox has none yet). Called
// again with the newer latest after a lost race; throws to refuse the write.
using NextYaml = std::function<std::string(const v1::PolicyRecord* latest)>;

struct WriteResult {
  v1::PolicyRecord record;  // the latest version after the write
  bool changed = false;     // false: next returned the latest text; nothing was stored
};

class PolicyStore {
 public:
  // Opens both buckets, creating them when missing.
  PolicyStore(Bus& bus, StoreOptions o = {});

  WriteResult write(const std::string& sandbox_id, const NextYaml& next, const std::string& author,
                    const std::string& reason);
  // nullopt when the sandbox has no policy.
  std::optional<v1::PolicyRecord> latest(const std::string& sandbox_id);
  // version 0 = the latest. Throws Error(kNotFound) saying which versions exist.
  v1::PolicyRecord get(const std::string& sandbox_id, uint64_t version);
  // Every version, oldest first; empty when the sandbox has none.
  std::vector<v1::PolicyRecord> history(const std::string& sandbox_id);

  // Commits lost to another writer so far (for tests and logs).
  uint64_t conflicts() const { return conflicts_; }

 private:
  struct Latest {
    v1::PolicyRecord record;
    uint64_t revision = 0;  // of key <sandbox_id> in `policies`
  };
  std::optional<Latest> read_latest(const std::string& sandbox_id);
  // Writes r to policy_versions unless it is there. Throws when it cannot.
  void archive(const v1::PolicyRecord& r, bool just_committed);

  StoreOptions o_;
  KvBucket latest_, versions_;
  std::atomic<uint64_t> conflicts_{0};
};

std::string sha256_hex(std::string_view data);

}  // namespace bulwark::policy_service
