#include "services/driver-docker/state.h"

#include "services/driver-docker/container_spec.h"

namespace bulwark::docker {

namespace {
// Docker's states: created, restarting, running, removing, paused, exited, dead. Paused and
// restarting still hold a live process; "dead" is a container whose removal failed, ended.
// created and removing are neither: the next pass settles them.
bool is_running(const std::string& s) { return s == "running" || s == "paused" || s == "restarting"; }
bool is_exited(const std::string& s) { return s == "exited" || s == "dead"; }

std::string label(const nlohmann::json& labels, const char* key) {
  if (!labels.is_object() || !labels.contains(key) || !labels[key].is_string()) return "";
  return labels[key].get<std::string>();
}
}  // namespace

v1::WorkloadStatus status_from_list(const nlohmann::json& c) {
  v1::WorkloadStatus st;
  st.set_workload_id(c.value("Id", ""));
  if (c.contains("Labels")) st.set_sandbox_id(label(c["Labels"], kSandboxLabel));
  std::string state = c.contains("State") && c["State"].is_string() ? c["State"].get<std::string>() : "";
  st.set_running(is_running(state));
  st.set_exited(is_exited(state));
  return st;
}

v1::WorkloadStatus status_from_inspect(const nlohmann::json& c) {
  v1::WorkloadStatus st;
  st.set_workload_id(c.value("Id", ""));
  if (c.contains("Config") && c["Config"].is_object() && c["Config"].contains("Labels"))
    st.set_sandbox_id(label(c["Config"]["Labels"], kSandboxLabel));
  if (c.contains("State") && c["State"].is_object()) {
    const auto& s = c["State"];
    std::string status = s.value("Status", "");
    st.set_running(is_running(status));
    st.set_exited(is_exited(status));
    // Also while "removing": the list said exited, and a removal under way keeps the code.
    st.set_exit_code(s.value("ExitCode", 0));
  }
  return st;
}

std::string exit_reason(const nlohmann::json& c) {
  if (!c.contains("State") || !c["State"].is_object()) return "";
  const auto& s = c["State"];
  if (s.value("OOMKilled", false)) return "killed by the container's memory limit (out of memory)";
  std::string error = s.value("Error", "");
  return error.empty() ? "" : "docker: " + error;
}

}  // namespace bulwark::docker
