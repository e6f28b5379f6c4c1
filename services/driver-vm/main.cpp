// bulwark-driver-vm: runs each sandbox in a QEMU microVM. See README.md.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "services/driver-vm/backend.h"
#include "shared/log.h"
#include "shared/util.h"

namespace {
std::string beside_binary(const std::string& rel) {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? rel : (exe.parent_path() / rel).string();
}

std::string default_image_socket(const std::string& engine) {
  if (engine == "docker") {
    const char* host = std::getenv("DOCKER_HOST");
    if (host && std::string(host).rfind("unix://", 0) == 0) return std::string(host).substr(7);
    return "/var/run/docker.sock";
  }
  return "/run/podman/podman.sock";
}

void require_file(const std::string& path, const std::string& flag, const std::string& how) {
  if (::access(path.c_str(), R_OK) != 0)
    throw bulwark::Error(bulwark::Code::kFailedPrecondition, "--" + flag + " " + path + " cannot be read: " + how, flag);
}
}  // namespace

int main(int argc, char** argv) {
  bulwark::Service svc("driver-vm");
  bulwark::DriverHostOptions host{.kind = "vm", .capacity = 4};
  bulwark::vm::BackendOptions o;
  o.driver_id = "vm-" + bulwark::hostname();
  o.state_dir = "/var/lib/bulwark/driver-vm";
  o.vm.kernel = beside_binary("vm/vmlinuz");
  o.vm.initrd = beside_binary("vm/initrd.img");
  o.vm.bundle_dir = bulwark::default_supervisor_bundle();
  std::string accel = "auto", memory = "512", sandbox_nats_url;
  uint32_t headroom_mib = 1024;
  double heartbeat_s = 1, poll_s = 1;
  std::vector<std::string> labels;
  svc.flags()
      .text("driver-id", &o.driver_id, "this driver's id (a NATS subject token)")
      .text("state-dir", &o.state_dir, "where VM disks, console logs and records live (one directory per sandbox)")
      .text("kernel", &o.vm.kernel, "guest kernel (vmlinuz); scripts/build-vm-initrd DIR writes DIR/vmlinuz")
      .text("initrd", &o.vm.initrd, "guest initramfs written by scripts/build-vm-initrd")
      .choice("accel", &accel, "QEMU accelerator: auto tries KVM and falls back to TCG with a warning",
              {"auto", "kvm", "tcg"})
      .text("qemu", &o.vm.qemu, "QEMU binary")
      .text("kernel-args", &o.vm.kernel_args, "extra guest kernel command line")
      .count("capacity", &host.capacity, "VMs this driver runs at once", 1, 10000)
      .text("memory", &memory, "guest memory in MiB when a sandbox asks for none")
      .count("disk-headroom", &headroom_mib, "MiB free on a sandbox's disk beyond the image's files", 16, 1u << 20)
      .choice("image-engine", &o.image_engine, "where sandbox images come from", {"podman", "docker"})
      .text("image-socket", &o.image_socket,
            "that engine's API socket (default /run/podman/podman.sock, or DOCKER_HOST / /var/run/docker.sock)")
      .text("supervisor-bundle", &o.vm.bundle_dir, "directory made by scripts/bundle-supervisor (shared read-only)")
      .text("sandbox-nats-url", &sandbox_nats_url,
            "NATS URL as the guest reaches it (default: --nats-url with a loopback host as 10.0.2.2, QEMU's host address)")
      .list("label", &labels, "K=V label in the heartbeat, matched by a sandbox's driver_selector (repeatable)")
      .seconds("heartbeat", &heartbeat_s, "time between heartbeats", 0.05, 60)
      .seconds("poll", &poll_s, "time between VM state checks", 0.05, 60);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    o.driver_id = host.driver_id = bulwark::normalize_driver_id(o.driver_id);
    host.labels = bulwark::parse_labels(labels, "label");
    bulwark::check_supervisor_bundle(o.vm.bundle_dir);
    const std::string how = "run scripts/build-vm-initrd DIR (it needs linux-image-amd64 and busybox-static) and pass "
                            "--kernel DIR/vmlinuz --initrd DIR/initrd.img";
    require_file(o.vm.kernel, "kernel", how);
    require_file(o.vm.initrd, "initrd", how);
    try {
      o.vm.default_memory_bytes = std::stoull(memory) << 20;
    } catch (const std::exception&) {
      throw bulwark::Error(bulwark::Code::kInvalidArgument, "--memory takes MiB, e.g. 512", "memory");
    }
    if (o.image_socket.empty()) o.image_socket = default_image_socket(o.image_engine);
    o.disk_headroom = uint64_t{headroom_mib} << 20;
    o.guest_nats_url = sandbox_nats_url.empty() ? bulwark::vm::guest_nats_url(svc.common().nats_url) : sandbox_nats_url;
    o.vm.accel = bulwark::vm::resolve_accel(accel, o.vm);
    host.heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000));
    host.poll = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
    spdlog::info("driver-vm {}: state in {}, accel {}, images from {} at {}, guests reach NATS at {}", o.driver_id,
                 o.state_dir, o.vm.accel, o.image_engine, o.image_socket, o.guest_nats_url);
    return std::make_unique<bulwark::DriverHost>(bus, std::make_unique<bulwark::vm::VmBackend>(o), host);
  });
}
