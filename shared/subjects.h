#pragma once
// Every NATS subject Bulwark uses, built in one place. docs/subjects.md is the catalogue.
#include <string>

namespace bulwark::subjects {

inline constexpr const char* kPlace = "bulwark.sched.place";
inline constexpr const char* kSchedulerQueue = "scheduler";
inline constexpr const char* kDriverHeartbeat = "bulwark.driver.heartbeat";
// JetStream stream capturing every bulwark.sandbox.> subject (state reports and logs).
inline constexpr const char* kSandboxStream = "BULWARK_SANDBOX";
inline constexpr const char* kSandboxAll = "bulwark.sandbox.>";

inline std::string driver_op(const std::string& driver_id, const std::string& op) {
  return "bulwark.driver." + driver_id + "." + op;  // op: create, delete, get, list
}
inline std::string sandbox_state(const std::string& sandbox_id) {
  return "bulwark.sandbox." + sandbox_id + ".state";
}
inline std::string sandbox_logs(const std::string& sandbox_id) {
  return "bulwark.sandbox." + sandbox_id + ".logs";
}
inline std::string health(const std::string& service) { return "bulwark." + service + ".health"; }

}  // namespace bulwark::subjects
