#pragma once
// driver-vm's DriverBackend: one QEMU microVM per sandbox (docs/drivers.md, "driver-vm").
// QEMU runs daemonized, so VMs outlive a driver restart; everything the driver knows about a VM
// is in <state-dir>/sandboxes/<sandbox_id>/ (vm_state.h), found again by listing that directory.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "services/driver-vm/qemu_cmd.h"
#include "services/driver-vm/rootfs.h"
#include "services/driver-vm/vm_state.h"
#include "shared/driver_host.h"

namespace bulwark::vm {

struct BackendOptions {
  std::string state_dir;
  std::string driver_id;
  std::string guest_nats_url;    // BULWARK_NATS_URL inside the guest
  VmConfig vm;                   // accel already resolved
  std::string image_engine = "podman";
  std::string image_socket;
  uint64_t disk_headroom = 1ull << 30;
};

// "kvm" or "tcg" for --accel auto|kvm|tcg. auto tries KVM only when /dev/kvm opens, and then only
// if a probe boot of the kernel (init = poweroff) ends cleanly within a few seconds; otherwise it
// warns and takes TCG (KVM in some nested/paravirtual hosts cannot boot a stock kernel).
std::string resolve_accel(const std::string& want, const VmConfig& c);

class VmBackend : public DriverBackend {
 public:
  explicit VmBackend(BackendOptions o);

  void capabilities(v1::DriverCapabilities& caps) const override;
  std::vector<std::string> validate(const v1::SandboxSpec& spec) override;
  v1::DriverCreateReply create(const std::string& sandbox_id, const v1::SandboxSpec& spec) override;
  bool remove(const std::string& sandbox_id) override;
  bool stop(const std::string& sandbox_id, std::chrono::milliseconds grace) override;
  std::string start(const std::string& sandbox_id) override;
  std::optional<v1::WorkloadStatus> get(const std::string& sandbox_id) override;
  std::vector<v1::WorkloadStatus> list() override;

  VmPaths paths(const std::string& sandbox_id) const;

 private:
  std::shared_ptr<std::mutex> lock_of(const std::string& sandbox_id);
  std::optional<VmMeta> load(const std::string& sandbox_id) const;  // only this driver's VMs
  void boot(const VmMeta& m);
  // Asks the guest to stop (run/stop: its init SIGTERMs the supervisor) and waits up to grace for
  // it to power off; then SIGTERM to QEMU, then SIGKILL. True when a QEMU was running.
  bool kill_vm(const std::string& sandbox_id, std::chrono::milliseconds grace);

  BackendOptions o_;
  ImageSource images_;
  RootfsCache rootfs_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_;
};

}  // namespace bulwark::vm
