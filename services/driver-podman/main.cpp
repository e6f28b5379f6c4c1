// bulwark-driver-podman: runs sandboxes as Podman containers. See README.md.
#include <unistd.h>

#include <cctype>
#include <filesystem>

#include "services/driver-podman/backend.h"
#include "shared/log.h"
#include "shared/util.h"

int main(int argc, char** argv) {
  bulwark::Service svc("driver-podman");
  std::string socket_path = "/run/podman/podman.sock";
  bulwark::podman::ContainerConfig c;
  bulwark::DriverHostOptions host{.kind = "podman"};
  c.driver_id = "podman-" + bulwark::hostname();
  c.bundle_dir = bulwark::default_supervisor_bundle();
  std::string container_nats_url;
  double heartbeat_s = 1, poll_s = 1;
  std::vector<std::string> labels;
  svc.flags()
      .text("podman-socket", &socket_path, "Podman API socket")
      .text("driver-id", &c.driver_id, "this driver's id (a NATS subject token)")
      .count("capacity", &host.capacity, "sandboxes this driver runs at once", 1, 100000)
      .list("label", &labels, "K=V label in the heartbeat, matched by a sandbox's driver_selector (repeatable)")
      .text("supervisor-bundle", &c.bundle_dir, "directory made by scripts/bundle-supervisor")
      .text("sandbox-nats-url", &container_nats_url, "NATS URL as seen from inside a sandbox (default: --nats-url)")
      .seconds("heartbeat", &heartbeat_s, "time between heartbeats", 0.05, 60)
      .seconds("poll", &poll_s, "time between container state checks", 0.05, 60);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    c.driver_id = host.driver_id = bulwark::normalize_driver_id(c.driver_id);
    host.labels = bulwark::parse_labels(labels, "label");
    bulwark::check_supervisor_bundle(c.bundle_dir);
    bulwark::enable_kernel_audit();
    c.nats_url = container_nats_url.empty() ? svc.common().nats_url : container_nats_url;
    host.heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000));
    host.poll = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
    return std::make_unique<bulwark::DriverHost>(bus, std::make_unique<bulwark::podman::PodmanBackend>(socket_path, c), host);
  });
}
