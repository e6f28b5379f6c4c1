#pragma once
// What a sandbox's microVM is, as pure functions of the spec and the driver's options: the QEMU
// command line, the guest's run.sh (what stage 2 of scripts/build-vm-initrd runs), the NATS URL as
// the guest reaches it, and what validate refuses. No process, file or socket is touched here.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::vm {

// Where one sandbox's files live: <state-dir>/sandboxes/<sandbox_id>/.
struct VmPaths {
  std::string dir;
  std::string disk() const { return dir + "/disk.qcow2"; }   // the image's ext4 as backing file
  std::string run_dir() const { return dir + "/run"; }       // 9p share bulwark-run (run.sh, exit_code)
  std::string run_script() const { return run_dir() + "/run.sh"; }
  std::string exit_code() const { return run_dir() + "/exit_code"; }
  std::string stop_request() const { return run_dir() + "/stop"; }  // the guest's init SIGTERMs the supervisor
  std::string console_log() const { return dir + "/console.log"; }
  std::string qemu_log() const { return dir + "/qemu.log"; }
  std::string qmp_socket() const { return dir + "/qmp.sock"; }
  std::string pidfile() const { return dir + "/qemu.pid"; }
  std::string meta() const { return dir + "/meta.json"; }
  std::string boot_marker() const { return dir + "/booting"; }  // exists while the driver starts QEMU
};

struct VmConfig {
  std::string qemu = "qemu-system-x86_64";
  std::string kernel;                 // vmlinuz
  std::string initrd;                 // initrd.img of scripts/build-vm-initrd
  std::string accel = "tcg";          // resolved: "kvm" or "tcg" (never "auto" here)
  std::string bundle_dir;             // supervisor bundle, shared read-only as 9p tag bulwark-bundle
  uint64_t default_memory_bytes = 512ull << 20;
  std::string kernel_args;            // appended to the kernel command line
};

// The guest's memory in MiB: the spec's, else the default; at least 128 MiB (the kernel, the
// initramfs and the supervisor need about that much).
uint64_t memory_mib(const v1::SandboxSpec& spec, const VmConfig& c);
// vCPUs: the spec's cpus rounded up to a whole CPU (a VM has no fractions), at least 1.
uint32_t vcpus(const v1::SandboxSpec& spec);

// The QEMU argv (argv[0] = c.qemu) for one boot. QEMU daemonizes once the VM is set up and writes
// its pid to p.pidfile(); -no-reboot makes the guest's poweroff (or a panic, panic=-1) end QEMU.
std::vector<std::string> qemu_argv(const std::string& sandbox_id, const v1::SandboxSpec& spec, const VmPaths& p,
                                   const VmConfig& c);

// The name QEMU runs under (-name): how a pid is checked to be this sandbox's QEMU.
std::string vm_name(const std::string& sandbox_id);

// A word the guest's busybox sh reads back as exactly s.
std::string shell_quote(const std::string& s);

// run.sh: sets "$@" to `env -i NAME=VALUE... <supervisor> [--provider-env required] [--pids N] -- <command>`.
// The environment: a default PATH, the image's env, the sandbox's env, then BULWARK_SANDBOX_ID,
// BULWARK_NATS_URL and BULWARK_POLICY_YAML last, so the user's env cannot redirect the supervisor.
std::string run_script(const std::string& sandbox_id, const v1::SandboxSpec& spec, const std::string& guest_nats_url,
                       const std::vector<std::string>& image_env);

// The NATS URL as the guest reaches it: QEMU's user network maps 10.0.2.2 to the host's loopback,
// so a loopback host (127.0.0.1, localhost, ::1) becomes 10.0.2.2. Other hosts stay.
std::string guest_nats_url(const std::string& host_url);

// Throws Error naming the field when the VM driver cannot honour the spec (GPUs: VFIO passthrough
// is documented, not implemented); returns warnings (cpus rounded up).
std::vector<std::string> check_spec(const v1::SandboxSpec& spec);

}  // namespace bulwark::vm
