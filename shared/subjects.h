#pragma once
// Every NATS subject Bulwark uses, built in one place. docs/subjects.md is the catalogue.
#include <cstdint>
#include <string>

namespace bulwark::subjects {

inline constexpr const char* kPlace = "bulwark.sched.place";
inline constexpr const char* kSchedulerQueue = "scheduler";
inline constexpr const char* kDriverHeartbeat = "bulwark.driver.heartbeat";
// JetStream stream capturing every bulwark.sandbox.> subject (state reports and logs).
inline constexpr const char* kSandboxStream = "BULWARK_SANDBOX";
inline constexpr const char* kSandboxAll = "bulwark.sandbox.>";

inline std::string driver_op(const std::string& driver_id, const std::string& op) {
  return "bulwark.driver." + driver_id + "." + op;  // op: capabilities, validate, create, get, list, stop, start, delete
}
inline std::string sandbox_state(const std::string& sandbox_id) {
  return "bulwark.sandbox." + sandbox_id + ".state";
}
inline std::string sandbox_logs(const std::string& sandbox_id) {
  return "bulwark.sandbox." + sandbox_id + ".logs";
}
inline std::string health(const std::string& service) { return "bulwark." + service + ".health"; }

// Policies (services/policy-service). Requests: bulwark.policy.<op>, op one of set, update, get,
// list, validate, served by queue group `policy`. Acks have one token more, so the request
// wildcard never matches them.
inline constexpr const char* kPolicyQueue = "policy";
inline constexpr const char* kPolicyRequests = "bulwark.policy.*";
inline constexpr const char* kPolicyAcks = "bulwark.policy.ack.*";
// JetStream KV buckets: the latest policy under key <sandbox_id> (supervisors watch it), and every
// version under key <sandbox_id>.<version>.
inline constexpr const char* kPolicyBucket = "policies";
inline constexpr const char* kPolicyVersionsBucket = "policy_versions";
inline std::string policy_op(const std::string& op) { return "bulwark.policy." + op; }
inline std::string policy_ack(const std::string& sandbox_id) { return "bulwark.policy.ack." + sandbox_id; }
inline std::string policy_version_key(const std::string& sandbox_id, uint64_t version) {
  return sandbox_id + "." + std::to_string(version);
}

// Providers (gateway-api owns them). resolve: privacy-router -> gateway, the clear credentials of
// one provider. env.<sandbox_id>: supervisor -> gateway at launch, the environment of the
// sandbox's non-inference providers. changed: gateway -> routers, a provider was updated or
// deleted (routers drop what they cached of it).
inline constexpr const char* kGatewayQueue = "gateway";
inline constexpr const char* kProviderResolve = "bulwark.provider.resolve";
inline constexpr const char* kProviderEnvAll = "bulwark.provider.env.*";
inline constexpr const char* kProviderChanged = "bulwark.provider.changed";
inline std::string provider_env(const std::string& sandbox_id) { return "bulwark.provider.env." + sandbox_id; }

// Inference (services/privacy-router). A supervisor publishes an InferenceCall on
// bulwark.inference.call.<sandbox_id> with a reply subject; one router of the queue group answers
// with InferenceFrames on it. Route tables live in KV `inference_routes` under key `global` and
// `sandbox.<sandbox_id>` (gateway-api writes, routers watch).
inline constexpr const char* kInferenceQueue = "privacy-router";
inline constexpr const char* kInferenceCallAll = "bulwark.inference.call.*";
inline constexpr const char* kInferenceRoutesBucket = "inference_routes";
inline constexpr const char* kInferenceGlobalKey = "global";
inline std::string inference_call(const std::string& sandbox_id) { return "bulwark.inference.call." + sandbox_id; }
inline std::string inference_routes_key(const std::string& sandbox_id) {
  return sandbox_id.empty() ? std::string(kInferenceGlobalKey) : "sandbox." + sandbox_id;
}

// exec, file transfer and connect into a running sandbox (docs/exec.md). Outside bulwark.sandbox.>
// on purpose: that is captured by a JetStream stream. The supervisor of <sandbox_id> subscribes to
// exec_all(<sandbox_id>); an ExecRequest goes to exec_start (with a reply inbox for ExecFrames),
// its ExecInput to exec_input.
inline std::string exec_all(const std::string& sandbox_id) { return "bulwark.exec." + sandbox_id + ".>"; }
inline std::string exec_start(const std::string& sandbox_id, const std::string& exec_id) {
  return "bulwark.exec." + sandbox_id + "." + exec_id;
}
inline std::string exec_input(const std::string& sandbox_id, const std::string& exec_id) {
  return "bulwark.exec." + sandbox_id + "." + exec_id + ".in";
}

}  // namespace bulwark::subjects
