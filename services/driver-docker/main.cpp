// bulwark-driver-docker: runs sandboxes as Docker containers. See README.md.
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "services/driver-docker/backend.h"
#include "shared/audit.h"
#include "shared/log.h"
#include "shared/util.h"

int main(int argc, char** argv) {
  bulwark::Service svc("driver-docker");
  bulwark::docker::BackendOptions o;
  bulwark::DriverHostOptions host{.kind = "docker"};
  o.socket_path = bulwark::docker::default_socket();
  o.container.driver_id = "docker-" + bulwark::hostname();
  o.container.bundle_dir = bulwark::default_supervisor_bundle();
  double heartbeat_s = 1, poll_s = 1;
  std::vector<std::string> labels;
  uint32_t pids_limit = 4096;
  std::string memory_limit, cpu_limit;
  svc.flags()
      .text("docker-socket", &o.socket_path, "Docker Engine API socket (default: DOCKER_HOST=unix://PATH, else /var/run/docker.sock)")
      .text("driver-id", &o.container.driver_id, "this driver's id (a NATS subject token)")
      .count("capacity", &host.capacity, "sandboxes this driver runs at once", 1, 100000)
      .list("label", &labels, "K=V label in the heartbeat, matched by a sandbox's driver_selector (repeatable)")
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
    o.container.driver_id = host.driver_id = bulwark::normalize_driver_id(o.container.driver_id);
    host.labels = bulwark::parse_labels(labels, "label");
    if (o.socket_path.empty())
      throw bulwark::Error(bulwark::Code::kInvalidArgument,
                           std::string("DOCKER_HOST=") + std::getenv("DOCKER_HOST") +
                               " is not a unix:// socket: driver-docker speaks to dockerd over its Unix socket; set "
                               "--docker-socket PATH",
                           "docker_socket");
    bulwark::check_supervisor_bundle(o.container.bundle_dir);
    o.container.pids_limit = pids_limit;
    o.container.memory_bytes = bulwark::parse_bytes(memory_limit, "memory_limit");
    o.container.nano_cpus = bulwark::docker::parse_cpus(cpu_limit, "cpu_limit");
    bulwark::enable_kernel_audit();
    o.nats_url = svc.common().nats_url;
    host.heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000));
    host.poll = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
    return std::make_unique<bulwark::DriverHost>(bus, std::make_unique<bulwark::docker::DockerBackend>(o), host);
  });
}
