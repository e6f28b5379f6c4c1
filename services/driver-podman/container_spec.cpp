#include "services/driver-podman/container_spec.h"

#include "shared/error.h"

namespace bulwark::podman {

std::string container_name(const std::string& sandbox_id) { return "bulwark-" + sandbox_id; }

nlohmann::json container_spec(const std::string& sandbox_id, const v1::SandboxSpec& spec, const ContainerConfig& c) {
  const std::string b = kBundleMount;
  // The supervisor runs through the bundled loader with the bundled libraries, so it works in any
  // image (busybox, distroless, another libc) without installing anything into it.
  nlohmann::json entrypoint = {b + "/lib/ld.so", "--library-path", b + "/lib", b + "/bin/bulwark-supervisor"};
  nlohmann::json command = nlohmann::json::array();
  // Providers attached: the agent must not start without their environment, which the supervisor
  // fetches from gateway-api itself. Their values never pass through here (nor podman's records).
  if (spec.providers_size() > 0) command = {"--provider-env", "required"};
  // The sandbox outlives its agent (exec, download) until deleted.
  if (spec.keep_after_exit()) command.push_back("--keep-after-exit=true");
  // The agent's own pseudo-terminal is the supervisor's to give (the container needs none).
  if (spec.tty()) command.push_back("--tty=true");
  command.push_back("--");
  for (const auto& a : spec.command()) command.push_back(a);

  nlohmann::json env = nlohmann::json::object();
  for (const auto& [k, v] : spec.env()) env[k] = v;
  // Set last so a user's env cannot point the supervisor elsewhere.
  env["BULWARK_SANDBOX_ID"] = sandbox_id;
  env["BULWARK_NATS_URL"] = c.nats_url;
  if (!spec.policy().empty()) env["BULWARK_POLICY_YAML"] = spec.policy();

  nlohmann::json labels = {{kManagedLabel, "true"}, {kSandboxLabel, sandbox_id}, {kDriverLabel, c.driver_id},
                           {kNameLabel, spec.name()}};
  for (const auto& [k, v] : spec.labels()) labels["io.bulwark.label." + k] = v;

  // The sandbox's own resources win over the driver's defaults (runtime-spec LinuxResources).
  const auto& res = spec.resources();
  if (res.cpus() < 0 || (res.cpus() > 0 && res.cpus() < 0.01))
    throw Error(Code::kInvalidArgument, "resources.cpus must be 0.01 or more", "resources.cpus");
  nlohmann::json limits = {{"pids", {{"limit", res.pids() ? static_cast<int64_t>(res.pids()) : c.pids_limit}}}};
  if (res.memory_bytes()) {
    if (res.memory_bytes() < 6 * 1024 * 1024)
      throw Error(Code::kInvalidArgument, "resources.memory_bytes must be at least 6 MiB", "resources.memory_bytes");
    limits["memory"] = {{"limit", res.memory_bytes()}, {"swap", res.memory_bytes()}};  // no swap beyond it
  }
  if (res.cpus() > 0) limits["cpu"] = {{"quota", static_cast<int64_t>(res.cpus() * 100000)}, {"period", 100000}};
  // GPUs by CDI name (podman 4.1+ resolves nvidia.com/gpu=N from /etc/cdi, written by the NVIDIA
  // Container Toolkit's `nvidia-ctk cdi generate`).
  nlohmann::json devices = nlohmann::json::array();
  for (uint32_t i = 0; i < res.gpus(); ++i) devices.push_back({{"path", "nvidia.com/gpu=" + std::to_string(i)}});

  nlohmann::json body = {
      {"name", container_name(sandbox_id)},
      {"hostname", spec.name()},
      {"image", spec.image()},
      {"entrypoint", entrypoint},
      {"command", command},
      {"env", env},
      {"labels", labels},
      {"mounts", {{{"destination", b}, {"source", c.bundle_dir}, {"type", "bind"}, {"options", {"ro"}}}}},
      // The supervisor connects out to NATS; the agent gets its own network namespace from the
      // supervisor (confinement issue), so only the supervisor ever sees this one.
      {"netns", {{"nsmode", "host"}}},
      // What the supervisor needs to build the agent's namespaces, veth and firewall; the agent
      // itself drops every capability. AUDIT_READ: the supervisor reads its sandbox's Landlock
      // denials from the kernel audit log. SYS_PTRACE: the egress proxy finds which program
      // opened a connection in the agent's /proc (fd tables, exe), which another uid's process
      // only shows with it. unmask: a fresh /proc for the agent's PID namespace may only be
      // mounted where /proc is not partly masked.
      {"cap_add", {"SYS_ADMIN", "NET_ADMIN", "AUDIT_READ", "SYS_PTRACE"}},
      {"unmask", {"ALL"}},
      // The agent gets the supervisor's own filter (docs/seccomp.md), whose denials go to a
      // listener that logs them. Podman's profile would answer some of the same calls first
      // (an ERRNO outranks a listener), silently and with other errnos.
      {"seccomp_profile_path", "unconfined"},
      {"resource_limits", limits},
      {"stdin", false},
      {"terminal", false},
      {"remove", false},
  };
  if (!devices.empty()) body["devices"] = devices;
  return body;
}

}  // namespace bulwark::podman
