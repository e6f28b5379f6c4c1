#include "services/policy-service/store.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::policy_service {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

v1::PolicyRecord parse_record(const KvEntry& e, const std::string& bucket, const std::string& sandbox_id) {
  v1::PolicyRecord r;
  if (!r.ParseFromString(e.value) || r.sandbox_id() != sandbox_id)
    throw Error(Code::kInternal, "KV bucket " + bucket + " key " + e.key + " (revision " + std::to_string(e.revision) +
                                     ") does not hold a PolicyRecord of sandbox " + sandbox_id);
  return r;
}

Bus::KvOptions bucket(const char* name, const char* description, int replicas) {
  Bus::KvOptions o;
  o.bucket = name;
  o.description = description;
  o.history = 1;  // versions live in policy_versions; one value a key is all each bucket needs
  o.replicas = replicas;
  return o;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error(Code::kInternal, "OpenSSL EVP_Digest(sha256) failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

PolicyStore::PolicyStore(Bus& bus, StoreOptions o)
    : o_(o),
      latest_(bus.key_value(
          bucket(subjects::kPolicyBucket, "Bulwark: the latest policy of each sandbox, key <sandbox_id>", o.replicas))),
      versions_(bus.key_value(bucket(subjects::kPolicyVersionsBucket,
                                     "Bulwark: every policy version, key <sandbox_id>.<version>", o.replicas))) {}

std::optional<PolicyStore::Latest> PolicyStore::read_latest(const std::string& sandbox_id) {
  auto e = latest_.get(sandbox_id);
  if (!e) return std::nullopt;
  return Latest{parse_record(*e, latest_.name(), sandbox_id), e->revision};
}

std::optional<v1::PolicyRecord> PolicyStore::latest(const std::string& sandbox_id) {
  auto l = read_latest(sandbox_id);
  if (!l) return std::nullopt;
  return l->record;
}

void PolicyStore::archive(const v1::PolicyRecord& r, bool just_committed) {
  const std::string key = subjects::policy_version_key(r.sandbox_id(), r.version());
  // Usually there already, unless just committed: one read is cheaper than a failing create.
  if (!just_committed && versions_.get(key)) return;
  // Written once (create-only): an existing key is this same committed version, archived by
  // another replica meanwhile.
  versions_.update(key, r.SerializeAsString(), 0);
}

WriteResult PolicyStore::write(const std::string& sandbox_id, const NextYaml& next, const std::string& author,
                               const std::string& reason) {
  const std::string request_id = random_hex(8);
  thread_local std::minstd_rand jitter(std::random_device{}());
  for (int attempt = 1; attempt <= o_.max_attempts; ++attempt) {
    auto cur = read_latest(sandbox_id);
    // A commit whose ack was lost looks like a conflict; the record tells it was ours.
    if (cur && cur->record.request_id() == request_id) return {cur->record, true};
    std::string yaml = next(cur ? &cur->record : nullptr);
    std::string sha = sha256_hex(yaml);
    if (cur && sha == cur->record.sha256()) return {cur->record, false};
    if (cur) archive(cur->record, false);  // N is in the archive before N+1 can commit: no gaps

    v1::PolicyRecord rec;
    rec.set_sandbox_id(sandbox_id);
    rec.set_version(cur ? cur->record.version() + 1 : 1);
    rec.set_yaml(std::move(yaml));
    rec.set_sha256(sha);
    rec.set_created_at_ms(now_ms());
    rec.set_author(author);
    rec.set_reason(reason);
    rec.set_request_id(request_id);
    if (latest_.update(sandbox_id, rec.SerializeAsString(), cur ? cur->revision : 0)) {
      try {
        archive(rec, true);
      } catch (const Error& e) {
        // Committed all the same; the next write (or list/get of it) archives it.
        spdlog::warn("sandbox {}: policy version {} is stored but not yet in {}: {}", sandbox_id, rec.version(),
                     versions_.name(), e.what());
      }
      return {rec, true};
    }
    ++conflicts_;
    // Another writer committed first: start again from its version, after a short jittered pause
    // so that a crowd of writers spreads out.
    std::uniform_int_distribution<int> pause(0, std::min(50, 2 * attempt));
    std::this_thread::sleep_for(std::chrono::milliseconds(pause(jitter)));
  }
  throw Error(Code::kUnavailable, "sandbox " + sandbox_id + "'s policy changed " + std::to_string(o_.max_attempts) +
                                      " times while this write was retrying; try again");
}

v1::PolicyRecord PolicyStore::get(const std::string& sandbox_id, uint64_t version) {
  auto no_policy = [&] { return Error(Code::kNotFound, "sandbox " + sandbox_id + " has no policy", "sandbox_id"); };
  if (version == 0) {
    auto cur = read_latest(sandbox_id);
    if (!cur) throw no_policy();
    return cur->record;
  }
  if (auto e = versions_.get(subjects::policy_version_key(sandbox_id, version)))
    return parse_record(*e, versions_.name(), sandbox_id);
  auto cur = read_latest(sandbox_id);
  if (!cur) throw no_policy();
  const uint64_t last = cur->record.version();
  if (version == last) {
    archive(cur->record, false);  // its writer stopped before archiving it
    return cur->record;
  }
  if (version > last)
    throw Error(Code::kNotFound,
                "sandbox " + sandbox_id + " has policy versions 1 to " + std::to_string(last) +
                    "; there is no version " + std::to_string(version),
                "version");
  throw Error(Code::kNotFound,
              "version " + std::to_string(version) + " of sandbox " + sandbox_id + " is missing from KV bucket " +
                  versions_.name(),
              "version");
}

std::vector<v1::PolicyRecord> PolicyStore::history(const std::string& sandbox_id) {
  std::map<uint64_t, v1::PolicyRecord> by_version;
  for (const auto& e : versions_.values(sandbox_id + ".*")) {
    auto r = parse_record(e, versions_.name(), sandbox_id);
    by_version[r.version()] = std::move(r);
  }
  // The latest may not be archived yet (its writer stopped in between): take it from `policies`.
  if (auto cur = read_latest(sandbox_id); cur && !by_version.count(cur->record.version())) {
    archive(cur->record, false);
    by_version[cur->record.version()] = cur->record;
  }
  std::vector<v1::PolicyRecord> out;
  out.reserve(by_version.size());
  for (auto& [v, r] : by_version) out.push_back(std::move(r));
  return out;
}

}  // namespace bulwark::policy_service
