#include "services/driver-podman/backend.h"

#include <spdlog/spdlog.h>

namespace bulwark::podman {

v1::WorkloadStatus status_from_list(const nlohmann::json& c) {
  v1::WorkloadStatus st;
  st.set_workload_id(c.value("Id", ""));
  if (c.contains("Labels") && c["Labels"].is_object()) st.set_sandbox_id(c["Labels"].value(kSandboxLabel, ""));
  std::string state = c.value("State", "");
  st.set_running(state == "running");
  st.set_exited(state == "exited" || state == "stopped" || c.value("Exited", false));
  st.set_exit_code(c.value("ExitCode", 0));
  return st;
}

PodmanBackend::PodmanBackend(std::string socket_path, ContainerConfig c)
    : podman_(std::move(socket_path)), c_(std::move(c)) {
  podman_.ping();
}

void PodmanBackend::capabilities(v1::DriverCapabilities& caps) const {
  set_container_capabilities(caps);  // GPUs: CDI device names (nvidia.com/gpu=N); podman refuses them without a CDI spec
}

std::vector<std::string> PodmanBackend::validate(const v1::SandboxSpec& spec) {
  const auto& image = spec.image();
  if (image.empty()) throw Error(Code::kInvalidArgument, "spec.image is empty", "image");
  if (!podman_.image_exists(image))
    throw Error(Code::kFailedPrecondition,
                "image '" + image + "' is not in podman's local store (no registry is used): build it with "
                "scripts/build-base-image or `podman import`", "image");
  container_spec("validate", spec, c_);  // throws on limits podman cannot express
  return {};
}

v1::DriverCreateReply PodmanBackend::adopt(const std::string& sandbox_id, const nlohmann::json& c) {
  const auto& state = c["State"];
  std::string id = c.value("Id", "");
  if (state.value("Status", "") == "created" || state.value("Status", "") == "configured") podman_.start_container(id);
  v1::DriverCreateReply r;
  r.set_workload_id(id);
  r.set_adopted(true);
  spdlog::info("sandbox {}: container {} already exists; adopted", sandbox_id, id.substr(0, 12));
  return r;
}

v1::DriverCreateReply PodmanBackend::create(const std::string& id, const v1::SandboxSpec& spec) {
  std::string name = container_name(id);
  if (auto existing = podman_.inspect_container(name)) return adopt(id, *existing);
  validate(spec);
  std::string cid;
  try {
    cid = podman_.create_container(container_spec(id, spec, c_));
  } catch (const Error& e) {
    // A concurrent create of the same sandbox won the name: adopt its container.
    if (auto existing = podman_.inspect_container(name)) return adopt(id, *existing);
    throw;
  }
  try {
    podman_.start_container(cid);
  } catch (const Error& e) {
    podman_.remove_container(cid);
    throw Error(e.code(), std::string("cannot start the sandbox container: ") + e.what());
  }
  spdlog::info("sandbox {}: container {} started from {}", id, cid.substr(0, 12), spec.image());
  v1::DriverCreateReply r;
  r.set_workload_id(cid);
  return r;
}

bool PodmanBackend::remove(const std::string& sandbox_id) { return podman_.remove_container(container_name(sandbox_id)); }

bool PodmanBackend::stop(const std::string& sandbox_id, std::chrono::milliseconds grace) {
  return podman_.stop_container(container_name(sandbox_id), static_cast<int>((grace.count() + 999) / 1000));
}

std::string PodmanBackend::start(const std::string& sandbox_id) {
  auto c = podman_.inspect_container(container_name(sandbox_id));
  if (!c) throw Error(Code::kNotFound, "no container for sandbox " + sandbox_id + " to start", "sandbox_id");
  std::string id = c->value("Id", "");
  podman_.start_container(id);
  return id;
}

std::optional<v1::WorkloadStatus> PodmanBackend::get(const std::string& sandbox_id) {
  auto c = podman_.inspect_container(container_name(sandbox_id));
  if (!c) return std::nullopt;
  v1::WorkloadStatus st;
  st.set_sandbox_id(sandbox_id);
  st.set_workload_id(c->value("Id", ""));
  const auto& s = (*c)["State"];
  st.set_running(s.value("Running", false));
  st.set_exited(s.value("Status", "") == "exited" || s.value("Status", "") == "stopped");
  st.set_exit_code(s.value("ExitCode", 0));
  if (s.value("OOMKilled", false)) st.set_reason("killed by the container's memory limit (out of memory)");
  return st;
}

std::vector<v1::WorkloadStatus> PodmanBackend::list() {
  std::vector<v1::WorkloadStatus> out;
  for (const auto& c : podman_.list_containers(std::string(kDriverLabel) + "=" + c_.driver_id))
    out.push_back(status_from_list(c));
  return out;
}

}  // namespace bulwark::podman
