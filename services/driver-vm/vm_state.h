#pragma once
// The driver's record of its VMs, kept on disk so a restarted driver finds them again:
// <state-dir>/sandboxes/<sandbox_id>/meta.json (owner, spec, image) beside QEMU's pidfile and the
// guest's exit_code. The decisions (what a VM's state means for Bulwark) are pure functions; the
// file and /proc readers below them are thin.
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "bulwark/v1/driver.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "services/driver-vm/qemu_cmd.h"

namespace bulwark::vm {

struct VmMeta {
  std::string sandbox_id;
  std::string driver_id;   // the owner: a driver lists only its own VMs
  v1::SandboxSpec spec;
  std::string image_id;
  std::string base_disk;   // the image's cached ext4 (the qcow2's backing file)
  std::vector<std::string> image_env;
  bool stopped = false;    // stopped by the driver (stop or delete), not ended by the guest
  int64_t created_ms = 0;
};

std::string meta_to_json(const VmMeta& m);
// Throws Error(kInternal) naming the file's problem.
VmMeta meta_from_json(const std::string& text);

// What QEMU and the guest left behind, as read from /proc and the run share.
struct Observed {
  bool qemu_alive = false;           // the pidfile's process is this VM's QEMU, and not a zombie
  std::optional<std::string> exit_code_file;  // the guest's run/exit_code, when written
  bool console_has_panic = false;
  bool booting = false;              // the driver is starting QEMU right now (the boot marker exists)
};

// The workload's status. Running while QEMU lives (or is being started). Ended: the supervisor's exit code when the
// guest wrote one; 143 when the driver stopped it; else 255 with a reason pointing at the console.
v1::WorkloadStatus status_of(const VmMeta& m, const Observed& o);

// The pid in a QEMU pidfile, when the file holds one.
std::optional<pid_t> parse_pidfile(const std::string& text);
// Whether /proc/<pid>/cmdline (NUL-separated) is this sandbox's QEMU: it names the VM and its disk.
bool cmdline_is_vm(const std::string& cmdline, const std::string& sandbox_id, const VmPaths& p);

// --- on the host ---
// The live QEMU of this VM, checked through /proc (a reused pid is not taken for it).
std::optional<pid_t> live_qemu(const std::string& sandbox_id, const VmPaths& p);
Observed observe(const std::string& sandbox_id, const VmPaths& p);
// Writes via a temp file and rename, so a crash never leaves half a file.
void write_file_atomic(const std::string& path, const std::string& content);
std::optional<std::string> read_file_if(const std::string& path);

}  // namespace bulwark::vm
