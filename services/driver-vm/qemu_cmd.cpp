#include "services/driver-vm/qemu_cmd.h"

#include <algorithm>
#include <cmath>

#include "shared/error.h"

namespace bulwark::vm {

namespace {
constexpr const char* kBundle = "/.bulwark";
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// QEMU's option syntax splits on ','; a literal comma in a path is written twice.
std::string opt(const std::string& path) {
  std::string out;
  for (char ch : path) {
    out.push_back(ch);
    if (ch == ',') out.push_back(',');
  }
  return out;
}
}  // namespace

uint64_t memory_mib(const v1::SandboxSpec& spec, const VmConfig& c) {
  uint64_t bytes = spec.resources().memory_bytes() ? spec.resources().memory_bytes() : c.default_memory_bytes;
  return std::max<uint64_t>(128, (bytes + (1ull << 20) - 1) >> 20);
}

uint32_t vcpus(const v1::SandboxSpec& spec) {
  double cpus = spec.resources().cpus();
  return cpus <= 1 ? 1u : static_cast<uint32_t>(std::ceil(cpus));
}

std::string vm_name(const std::string& sandbox_id) { return "bulwark-" + sandbox_id; }

std::vector<std::string> qemu_argv(const std::string& sandbox_id, const v1::SandboxSpec& spec, const VmPaths& p,
                                   const VmConfig& c) {
  // tsc_early_khz: under TCG the kernel cannot calibrate the TSC against microvm's timers and
  // waits forever; a stated frequency lets it boot (the clocksource watchdog then picks another).
  // audit=1: the supervisor reads Landlock denials from the guest kernel's audit log.
  std::string append = "console=ttyS0 panic=-1 quiet audit=1 tsc_early_khz=2000000";
  if (!c.kernel_args.empty()) append += " " + c.kernel_args;
  std::vector<std::string> a = {
      c.qemu,
      "-name", vm_name(sandbox_id),
      "-M", c.accel == "kvm" ? "microvm" : "microvm,pit=on,pic=on,rtc=on",
      "-accel", c.accel,
      "-cpu", c.accel == "kvm" ? "host" : "max",
      "-m", std::to_string(memory_mib(spec, c)) + "M",
      "-smp", std::to_string(vcpus(spec)),
      "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
      "-kernel", c.kernel,
      "-initrd", c.initrd,
      "-append", append,
      // The console (kernel, init stages, supervisor's own stderr) appended across boots.
      "-chardev", "file,id=con,path=" + opt(p.console_log()) + ",append=on",
      "-serial", "chardev:con",
      "-drive", "id=disk,file=" + opt(p.disk()) + ",format=qcow2,if=none",
      "-device", "virtio-blk-device,drive=disk",
      "-fsdev", "local,id=bundle,path=" + opt(c.bundle_dir) + ",security_model=none,readonly=on",
      "-device", "virtio-9p-device,fsdev=bundle,mount_tag=bulwark-bundle",
      "-fsdev", "local,id=run,path=" + opt(p.run_dir()) + ",security_model=none",
      "-device", "virtio-9p-device,fsdev=run,mount_tag=bulwark-run",
      // User-mode networking: the guest reaches the host's loopback at 10.0.2.2 and the outside
      // through QEMU's own sockets; nothing on the host (no tap, no bridge, no firewall) changes.
      "-netdev", "user,id=net",
      "-device", "virtio-net-device,netdev=net",
      "-qmp", "unix:" + opt(p.qmp_socket()) + ",server=on,wait=off",
      "-pidfile", p.pidfile(),
      "-daemonize",
  };
  return a;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\'') out += "'\\''";
    else out.push_back(ch);
  }
  return out + "'";
}

std::string run_script(const std::string& sandbox_id, const v1::SandboxSpec& spec, const std::string& guest_nats_url,
                       const std::vector<std::string>& image_env) {
  std::vector<std::pair<std::string, std::string>> env = {{"PATH", kDefaultPath}};
  auto put = [&](const std::string& k, const std::string& v) {
    auto it = std::find_if(env.begin(), env.end(), [&](const auto& kv) { return kv.first == k; });
    if (it != env.end()) env.erase(it);
    env.emplace_back(k, v);
  };
  for (const auto& kv : image_env) {
    auto eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) put(kv.substr(0, eq), kv.substr(eq + 1));
  }
  std::map<std::string, std::string> user(spec.env().begin(), spec.env().end());  // a stable order
  for (const auto& [k, v] : user) put(k, v);
  put("BULWARK_SANDBOX_ID", sandbox_id);
  put("BULWARK_NATS_URL", guest_nats_url);
  if (!spec.policy().empty()) put("BULWARK_POLICY_YAML", spec.policy());

  std::string s = "# written by bulwark-driver-vm for sandbox " + sandbox_id + "; read by the guest's init\n";
  // pids_max: read by stage 2, which puts the supervisor in a cgroup with that pids.max.
  s += "pids_max=" + std::to_string(spec.resources().pids() ? spec.resources().pids() : 4096) + "\n";
  s += "set -- env -i";
  for (const auto& [k, v] : env) s += " \\\n  " + shell_quote(k + "=" + v);
  std::string b = kBundle;
  s += " \\\n  " + shell_quote(b + "/lib/ld.so") + " --library-path " + shell_quote(b + "/lib") + " " +
       shell_quote(b + "/bin/bulwark-supervisor");
  // Providers attached: the agent must not start without their environment (fetched by the
  // supervisor from gateway-api; it never passes through a driver).
  if (spec.providers_size() > 0) s += " --provider-env required";
  // The sandbox (and so the VM) outlives its agent (exec, download) until deleted.
  if (spec.keep_after_exit()) s += " --keep-after-exit=true";
  s += " --";
  if (spec.command().empty()) {
    s += " sleep infinity";
  } else {
    for (const auto& arg : spec.command()) s += " " + shell_quote(arg);
  }
  return s + "\n";
}

std::string guest_nats_url(const std::string& host_url) {
  // nats://[user:pass@]host:port
  auto scheme = host_url.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  auto at = host_url.find('@', start);
  if (at != std::string::npos) start = at + 1;
  size_t end = host_url.size();
  std::string rest = host_url.substr(start);
  std::string host;
  if (!rest.empty() && rest[0] == '[') {
    end = host_url.find(']', start);
    if (end == std::string::npos) return host_url;
    ++end;
  } else {
    end = host_url.find_first_of(":/", start);
    if (end == std::string::npos) end = host_url.size();
  }
  host = host_url.substr(start, end - start);
  if (host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0)
    return host_url.substr(0, start) + "10.0.2.2" + host_url.substr(end);
  return host_url;
}

std::vector<std::string> check_spec(const v1::SandboxSpec& spec) {
  if (spec.resources().gpus() > 0)
    throw Error(Code::kInvalidArgument,
                "driver-vm does not pass GPUs to its microVMs (VFIO passthrough is described in docs/drivers.md, "
                "\"driver-vm\", but not implemented): drop --gpu, or run the sandbox on a driver with GPUs "
                "(driver_kind docker or kubernetes)",
                "resources.gpus");
  if (spec.image().empty())
    throw Error(Code::kInvalidArgument, "a VM sandbox needs an image (its root filesystem)", "image");
  std::vector<std::string> warnings;
  double cpus = spec.resources().cpus();
  if (cpus > 0 && cpus != std::floor(cpus))
    warnings.push_back("resources.cpus " + std::to_string(cpus) + " rounded up to " + std::to_string(vcpus(spec)) +
                       " vCPU(s): a microVM has whole CPUs");
  if (spec.resources().memory_bytes() > 0 && spec.resources().memory_bytes() < (128ull << 20))
    warnings.push_back("resources.memory_bytes raised to 128 MiB, the least a microVM boots with");
  return warnings;
}

}  // namespace bulwark::vm
