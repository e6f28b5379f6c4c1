// bulwark-driver-podman: runs sandboxes as Podman containers. See README.md.
#include <unistd.h>

#include <cctype>
#include <filesystem>

#include "services/driver-podman/driver.h"
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
  bulwark::Service svc("driver-podman");
  bulwark::podman::DriverOptions o;
  o.socket_path = "/run/podman/podman.sock";
  o.container.driver_id = "podman-" + bulwark::hostname();
  o.container.bundle_dir = default_bundle();
  std::string container_nats_url;
  double heartbeat_s = 1, poll_s = 1;
  svc.flags()
      .text("podman-socket", &o.socket_path, "Podman API socket")
      .text("driver-id", &o.container.driver_id, "this driver's id (a NATS subject token)")
      .count("capacity", &o.capacity, "sandboxes this driver runs at once", 1, 100000)
      .text("supervisor-bundle", &o.container.bundle_dir, "directory made by scripts/bundle-supervisor")
      .text("sandbox-nats-url", &container_nats_url, "NATS URL as seen from inside a sandbox (default: --nats-url)")
      .seconds("heartbeat", &heartbeat_s, "time between heartbeats", 0.05, 60)
      .seconds("poll", &poll_s, "time between container state checks", 0.05, 60);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    auto& id = o.container.driver_id;
    for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!bulwark::is_subject_token(id))
      throw bulwark::Error(bulwark::Code::kInvalidArgument, "--driver-id '" + id + "' may hold only a-z, 0-9, '-' and '_'");
    if (access((o.container.bundle_dir + "/bin/bulwark-supervisor").c_str(), X_OK) != 0)
      throw bulwark::Error(bulwark::Code::kFailedPrecondition,
                           "no supervisor bundle at " + o.container.bundle_dir +
                               " (build the project, or set --supervisor-bundle to what scripts/bundle-supervisor wrote)");
    // Landlock reports denials only through kernel audit, which a container cannot switch on
    // (it needs the host's PID namespace): the driver does it for its sandboxes.
    if (std::string why = bulwark::audit::ensure_enabled(); !why.empty())
      spdlog::warn("kernel audit is off and could not be switched on ({}): sandboxes will not log Landlock denials", why);
    o.container.nats_url = container_nats_url.empty() ? svc.common().nats_url : container_nats_url;
    o.heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000));
    o.poll = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
    return std::make_unique<bulwark::podman::PodmanDriver>(bus, o);
  });
}
