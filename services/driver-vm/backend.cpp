#include "services/driver-vm/backend.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <spdlog/spdlog.h>
#include <thread>

#include "shared/error.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::vm {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string resolve_accel(const std::string& want, const VmConfig& c) {
  if (want == "tcg") return "tcg";
  int open_errno = 0;
  bool kvm_opens = false;
  {
    Fd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    open_errno = errno;
    kvm_opens = static_cast<bool>(kvm);
  }
  if (want == "kvm") {
    if (!kvm_opens)
      throw Error(Code::kFailedPrecondition,
                  errno_text("open(/dev/kvm)", open_errno) + ": --accel kvm needs KVM; use --accel tcg or auto", "accel");
    return "kvm";
  }
  if (want != "auto") throw Error(Code::kInvalidArgument, "--accel must be auto, kvm or tcg", "accel");
  if (!kvm_opens) {
    spdlog::warn("/dev/kvm cannot be opened: microVMs run under TCG (emulation, several times slower)");
    return "tcg";
  }
  // A probe boot: the kernel with init = `busybox poweroff -f`. Some hosts give a /dev/kvm that
  // cannot run a stock kernel (QEMU aborts on an MSR, or the guest hangs).
  auto t0 = std::chrono::steady_clock::now();
  TempDir tmp("bulwark-vm-probe");
  auto p = Process::spawn({.argv = {c.qemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128M", "-nodefaults",
                                    "-no-user-config", "-no-reboot", "-display", "none", "-kernel", c.kernel, "-initrd",
                                    c.initrd, "-append", "console=ttyS0 panic=-1 rdinit=/bin/busybox -- poweroff -f",
                                    "-serial", "none"},
                           .output_file = tmp.file("out")});
  auto code = p.wait_for(15s);
  if (!code) p.stop(1000ms);
  if (code && *code == 0) {
    spdlog::info("KVM works: microVMs run with -accel kvm (probe boot {:.1f} s)",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return "kvm";
  }
  auto out = read_file_if(tmp.file("out")).value_or("");
  if (out.size() > 300) out = out.substr(0, 300);
  spdlog::warn("KVM is present but cannot boot the kernel ({}): microVMs run under TCG (emulation, several times "
               "slower)",
               code ? "QEMU exited " + std::to_string(*code) + ": " + out : std::string("the probe boot hung"));
  return "tcg";
}

VmBackend::VmBackend(BackendOptions o)
    : o_(std::move(o)), images_(o_.image_socket, o_.image_engine), rootfs_(o_.state_dir + "/images", images_, o_.disk_headroom) {
  fs::create_directories(o_.state_dir + "/sandboxes");
  // No boot is in progress when the driver starts: a marker left by a crash would read as running.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o_.state_dir + "/sandboxes", ec)) fs::remove(e.path() / "booting", ec);
}

VmPaths VmBackend::paths(const std::string& sandbox_id) const {
  // The id names a directory: only a subject token (no '/', no '..') gets this far.
  if (!is_subject_token(sandbox_id)) throw Error(Code::kInvalidArgument, "bad sandbox id '" + sandbox_id + "'", "sandbox_id");
  return VmPaths{o_.state_dir + "/sandboxes/" + sandbox_id};
}

std::shared_ptr<std::mutex> VmBackend::lock_of(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  auto& m = locks_[sandbox_id];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

void VmBackend::capabilities(v1::DriverCapabilities& caps) const {
  caps.set_isolation("microvm");
  caps.set_gpu(false);
  caps.set_stop_start(true);
  caps.set_tty(false);
  caps.set_cpu_limit(true);
  caps.set_memory_limit(true);
  caps.set_pids_limit(true);
  caps.set_persistent_storage(true);
}

std::vector<std::string> VmBackend::validate(const v1::SandboxSpec& spec) {
  auto warnings = check_spec(spec);
  images_.inspect(spec.image());
  if (spec.tty()) warnings.push_back("tty: a VM sandbox's agent gets no pseudo-terminal (its output is still relayed)");
  return warnings;
}

std::optional<VmMeta> VmBackend::load(const std::string& sandbox_id) const {
  auto text = read_file_if(paths(sandbox_id).meta());
  if (!text) return std::nullopt;
  auto m = meta_from_json(*text);
  if (m.driver_id != o_.driver_id || m.sandbox_id != sandbox_id) return std::nullopt;
  return m;
}

void VmBackend::boot(const VmMeta& m) {
  auto p = paths(m.sandbox_id);
  fs::create_directories(p.run_dir());
  fs::remove(p.exit_code());
  fs::remove(p.stop_request());
  fs::remove(p.pidfile());
  // Written on every boot, so a changed --sandbox-nats-url reaches a restarted VM.
  write_file_atomic(p.run_script(), run_script(m.sandbox_id, m.spec, o_.guest_nats_url, m.image_env));
  auto argv = qemu_argv(m.sandbox_id, m.spec, p, o_.vm);
  // Until QEMU is up, a poll sees the marker and takes the VM for running, not for ended.
  write_file_atomic(p.boot_marker(), "");
  struct Unmark {
    std::string path;
    ~Unmark() { ::unlink(path.c_str()); }
  } unmark{p.boot_marker()};
  // QEMU daemonizes once the VM is set up: this process ends then, and the VM lives on without the
  // driver (a restarted driver finds it through the pidfile).
  auto q = Process::spawn({.argv = argv, .output_file = p.qemu_log()});
  auto code = q.wait_for(60s);
  if (!code) {
    q.stop(1000ms);
    throw Error(Code::kUnavailable, "QEMU did not finish setting up sandbox " + m.sandbox_id + "'s VM within 60 s");
  }
  if (*code != 0)
    throw Error(Code::kInternal, "QEMU could not start sandbox " + m.sandbox_id + "'s VM (exit " + std::to_string(*code) +
                                     "): " + read_file_if(p.qemu_log()).value_or(""));
  if (!live_qemu(m.sandbox_id, p))
    throw Error(Code::kInternal, "QEMU started but left no live process in " + p.pidfile() + ": " +
                                     read_file_if(p.qemu_log()).value_or(""));
}

v1::DriverCreateReply VmBackend::create(const std::string& sandbox_id, const v1::SandboxSpec& spec) {
  auto guard = lock_of(sandbox_id);
  std::lock_guard lock(*guard);
  auto p = paths(sandbox_id);
  v1::DriverCreateReply reply;
  reply.set_workload_id(vm_name(sandbox_id));
  if (auto m = load(sandbox_id)) {
    // Adopted. A VM that never booted (the driver died between its record and QEMU) boots now;
    // one that ran and ended stays ended (no restart).
    if (!fs::exists(p.console_log()) && !m->stopped) boot(*m);
    reply.set_adopted(true);
    return reply;
  }
  if (fs::exists(p.dir))
    throw Error(Code::kAlreadyExists, p.dir + " exists but is not a VM of driver " + o_.driver_id, "sandbox_id");
  check_spec(spec);
  auto t0 = std::chrono::steady_clock::now();
  auto image = images_.inspect(spec.image());
  auto base = rootfs_.ensure(image, spec.image());
  fs::create_directories(p.run_dir());
  try {
    run_tool({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, p.disk()},
             "apt-get install -y qemu-utils");
    VmMeta m;
    m.sandbox_id = sandbox_id;
    m.driver_id = o_.driver_id;
    m.spec = spec;
    m.image_id = image.id;
    m.base_disk = base;
    m.image_env = image.env;
    m.created_ms = to_millis(now_timestamp());
    write_file_atomic(p.meta(), meta_to_json(m));
    boot(m);
  } catch (...) {
    // Nothing half-made stays behind to be adopted later.
    kill_vm(sandbox_id, 0ms);
    std::error_code ec;
    fs::remove_all(p.dir, ec);
    throw;
  }
  spdlog::info("sandbox {}: VM {} booting ({} vCPU, {} MiB, accel {}; set up in {:.1f} s)", sandbox_id, vm_name(sandbox_id),
               vcpus(spec), memory_mib(spec, o_.vm), o_.vm.accel,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return reply;
}

bool VmBackend::kill_vm(const std::string& sandbox_id, std::chrono::milliseconds grace) {
  auto p = paths(sandbox_id);
  auto pid = live_qemu(sandbox_id, p);
  if (!pid) return false;
  auto gone_within = [&](std::chrono::milliseconds d) {
    auto deadline = std::chrono::steady_clock::now() + d;
    while (live_qemu(sandbox_id, p) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
    return !live_qemu(sandbox_id, p);
  };
  // Graceful first: the guest's init sees run/stop within a second and SIGTERMs the supervisor,
  // which passes it to the agent, reports its exit and ends; the guest then powers off.
  if (grace > 0ms) {
    write_file_atomic(p.stop_request(), "");
    if (gone_within(grace)) return true;
    spdlog::warn("sandbox {}: the guest did not power off within {} ms of the stop request; ending QEMU", sandbox_id,
                 grace.count());
  }
  // QEMU quits on SIGTERM, closing the qcow2 cleanly (the guest's ext4 journal covers the rest).
  // (The pid is looked up again each time: a QEMU that just ended may have passed its pid on.)
  if (auto now = live_qemu(sandbox_id, p)) ::kill(*now, SIGTERM);
  if (!gone_within(3000ms)) {
    if (auto now = live_qemu(sandbox_id, p)) {
      spdlog::warn("sandbox {}: QEMU {} ignored SIGTERM; killing it", sandbox_id, *now);
      ::kill(*now, SIGKILL);
    }
    gone_within(5000ms);
  }
  return true;
}

bool VmBackend::remove(const std::string& sandbox_id) {
  auto guard = lock_of(sandbox_id);
  std::lock_guard lock(*guard);
  auto p = paths(sandbox_id);
  if (!load(sandbox_id)) return false;
  kill_vm(sandbox_id, 5000ms);
  std::error_code ec;
  fs::remove_all(p.dir, ec);
  if (ec) throw Error(Code::kInternal, "removing " + p.dir + ": " + ec.message());
  return true;
}

bool VmBackend::stop(const std::string& sandbox_id, std::chrono::milliseconds grace) {
  auto guard = lock_of(sandbox_id);
  std::lock_guard lock(*guard);
  auto m = load(sandbox_id);
  if (!m) return false;
  auto p = paths(sandbox_id);
  if (live_qemu(sandbox_id, p)) {
    m->stopped = true;
    write_file_atomic(p.meta(), meta_to_json(*m));
    kill_vm(sandbox_id, grace);
  }
  return true;
}

std::string VmBackend::start(const std::string& sandbox_id) {
  auto guard = lock_of(sandbox_id);
  std::lock_guard lock(*guard);
  auto m = load(sandbox_id);
  if (!m) throw Error(Code::kNotFound, "no VM for sandbox " + sandbox_id + " on driver " + o_.driver_id, "sandbox_id");
  auto p = paths(sandbox_id);
  if (!live_qemu(sandbox_id, p)) {
    m->stopped = false;
    write_file_atomic(p.meta(), meta_to_json(*m));
    try {
      boot(*m);  // the same disk: what the sandbox wrote is still there
    } catch (...) {
      m->stopped = true;  // it stays stopped, not "ended by the guest"
      write_file_atomic(p.meta(), meta_to_json(*m));
      throw;
    }
  }
  return vm_name(sandbox_id);
}

std::optional<v1::WorkloadStatus> VmBackend::get(const std::string& sandbox_id) {
  auto m = load(sandbox_id);
  if (!m) return std::nullopt;
  return status_of(*m, observe(sandbox_id, paths(sandbox_id)));
}

std::vector<v1::WorkloadStatus> VmBackend::list() {
  std::vector<v1::WorkloadStatus> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(o_.state_dir + "/sandboxes", ec)) {
    std::string id = entry.path().filename().string();
    if (!is_subject_token(id)) continue;
    try {
      if (auto st = get(id)) out.push_back(std::move(*st));
    } catch (const Error& e) {
      spdlog::warn("sandbox {}: state in {} unreadable: {}", id, entry.path().string(), e.what());
    }
  }
  if (ec) throw Error(Code::kInternal, "listing " + o_.state_dir + "/sandboxes: " + ec.message());
  return out;
}

}  // namespace bulwark::vm
