// bulwark-driver-docker: runs sandboxes as Docker containers. See README.md.
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "services/driver-docker/driver.h"
#include "shared/audit.h"
#include "shared/log.h"
#include "shared/util.h"

namespace {
// The bundle that scripts/bundle-supervisor writes beside the binaries.
std::string default_bundle() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : (exe.parent_path() / "supervisor-bundle").string();
}
}  // namespace

int main(int argc, char** argv) {
  bulwark::Service svc("driver-docker");
  bulwark::docker::DriverOptions o;
  o.socket_path = bulwark::docker::default_socket();
  o.container.driver_id = "docker-" + bulwark::hostname();
  o.container.bundle_dir = default_bundle();
  double heartbeat_s = 1, poll_s = 1;
  uint32_t pids_limit = 4096;
  std::string memory_limit, cpu_limit;
  svc.flags()
      .text("docker-socket", &o.socket_path, "Docker Engine API socket (default: DOCKER_HOST=unix://PATH, else /var/run/docker.sock)")
      .text("driver-id", &o.container.driver_id, "this driver's id (a NATS subject token)")
      .count("capacity", &o.capacity, "sandboxes this driver runs at once", 1, 100000)
      .text("supervisor-bundle", &o.container.bundle_dir, "directory made by scripts/bundle-supervisor")
      .text("sandbox-nats-url", &o.sandbox_nats_url,
            "NATS URL as seen from inside a sandbox (default: --nats-url, a loopback host replaced by the network's gateway)")
      .text("network", &o.container.network, "docker network of the sandboxes: a bridge, created when missing, or host")
      .count("pids-limit", &pids_limit, "processes per sandbox container", 16, 4194304)
      .text("memory-limit", &memory_limit, "memory per sandbox container, e.g. 512m or 2g (default: none)")
      .text("cpu-limit", &cpu_limit, "CPUs per sandbox container, e.g. 0.5 or 2 (default: none)")
      .seconds("heartbeat", &heartbeat_s, "time between heartbeats", 0.05, 60)
      .seconds("poll", &poll_s, "time between container state checks", 0.05, 60);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    auto& id = o.container.driver_id;
    for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!bulwark::is_subject_token(id))
      throw bulwark::Error(bulwark::Code::kInvalidArgument, "--driver-id '" + id + "' may hold only a-z, 0-9, '-' and '_'");
    if (o.socket_path.empty())
      throw bulwark::Error(bulwark::Code::kInvalidArgument,
                           std::string("DOCKER_HOST=") + std::getenv("DOCKER_HOST") +
                               " is not a unix:// socket: driver-docker speaks to dockerd over its Unix socket; set "
                               "--docker-socket PATH",
                           "docker_socket");
    if (access((o.container.bundle_dir + "/bin/bulwark-supervisor").c_str(), X_OK) != 0)
      throw bulwark::Error(bulwark::Code::kFailedPrecondition,
                           "no supervisor bundle at " + o.container.bundle_dir +
                               " (build the project, or set --supervisor-bundle to what scripts/bundle-supervisor wrote)");
    o.container.pids_limit = pids_limit;
    o.container.memory_bytes = bulwark::docker::parse_bytes(memory_limit, "memory_limit");
    o.container.nano_cpus = bulwark::docker::parse_cpus(cpu_limit, "cpu_limit");
    // Landlock reports denials only through kernel audit, which a container cannot switch on
    // (it needs the host's PID namespace): the driver does it for its sandboxes.
    if (std::string why = bulwark::audit::ensure_enabled(); !why.empty())
      spdlog::warn("kernel audit is off and could not be switched on ({}): sandboxes will not log Landlock denials", why);
    o.nats_url = svc.common().nats_url;
    o.heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000));
    o.poll = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
    return std::make_unique<bulwark::docker::DockerDriver>(bus, o);
  });
}
