#include "services/driver-vm/qemu_cmd.h"

#include <doctest/doctest.h>

#include <algorithm>

#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::vm;

namespace {
// The value after a flag (the first occurrence), or "" when the flag is absent.
std::string after(const std::vector<std::string>& argv, const std::string& flag, int nth = 0) {
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag && nth-- == 0) return argv[i + 1];
  return "";
}
VmConfig config() {
  VmConfig c;
  c.kernel = "/k/vmlinuz";
  c.initrd = "/k/initrd.img";
  c.bundle_dir = "/opt/bundle";
  c.accel = "tcg";
  return c;
}
}  // namespace

TEST_CASE("qemu argv: microVM, limits, disk, shares, network, control") {
  v1::SandboxSpec spec;
  spec.mutable_resources()->set_cpus(1.5);
  spec.mutable_resources()->set_memory_bytes(300ull << 20);
  VmPaths p{"/state/sandboxes/sb1"};
  auto a = qemu_argv("sb1", spec, p, config());
  CHECK(a[0] == "qemu-system-x86_64");
  CHECK(after(a, "-name") == "bulwark-sb1");
  CHECK(after(a, "-M").rfind("microvm", 0) == 0);
  CHECK(after(a, "-accel") == "tcg");
  CHECK(after(a, "-m") == "300M");
  CHECK(after(a, "-smp") == "2");  // 1.5 CPUs round up
  CHECK(after(a, "-kernel") == "/k/vmlinuz");
  CHECK(after(a, "-initrd") == "/k/initrd.img");
  CHECK(after(a, "-append").find("console=ttyS0") != std::string::npos);
  CHECK(after(a, "-append").find("panic=-1") != std::string::npos);
  CHECK(after(a, "-drive") == "id=disk,file=/state/sandboxes/sb1/disk.qcow2,format=qcow2,if=none");
  CHECK(after(a, "-fsdev", 0) == "local,id=bundle,path=/opt/bundle,security_model=none,readonly=on");
  CHECK(after(a, "-fsdev", 1) == "local,id=run,path=/state/sandboxes/sb1/run,security_model=none");
  CHECK(after(a, "-device", 1).find("mount_tag=bulwark-bundle") != std::string::npos);
  CHECK(after(a, "-device", 2).find("mount_tag=bulwark-run") != std::string::npos);
  CHECK(after(a, "-netdev") == "user,id=net");
  CHECK(after(a, "-chardev") == "file,id=con,path=/state/sandboxes/sb1/console.log,append=on");
  CHECK(after(a, "-qmp") == "unix:/state/sandboxes/sb1/qmp.sock,server=on,wait=off");
  CHECK(after(a, "-pidfile") == "/state/sandboxes/sb1/qemu.pid");
  // The guest's poweroff must end QEMU, and QEMU must outlive the driver.
  CHECK(std::count(a.begin(), a.end(), "-no-reboot") == 1);
  CHECK(std::count(a.begin(), a.end(), "-daemonize") == 1);
}

TEST_CASE("qemu argv: defaults, KVM, commas in paths") {
  v1::SandboxSpec spec;
  auto c = config();
  c.accel = "kvm";
  c.default_memory_bytes = 1ull << 30;
  auto a = qemu_argv("x", spec, VmPaths{"/s,1/x"}, c);
  CHECK(after(a, "-m") == "1024M");
  CHECK(after(a, "-smp") == "1");
  CHECK(after(a, "-accel") == "kvm");
  CHECK(after(a, "-cpu") == "host");
  CHECK(after(a, "-drive") == "id=disk,file=/s,,1/x/disk.qcow2,format=qcow2,if=none");
  spec.mutable_resources()->set_memory_bytes(1000);
  CHECK(memory_mib(spec, c) == 128);
}

TEST_CASE("shell_quote survives quotes, spaces, newlines and dollars") {
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$HOME\n`x`") == "'$HOME\n`x`'");
  CHECK(shell_quote("") == "''");
}

TEST_CASE("run.sh: env order, supervisor entry, providers, command") {
  v1::SandboxSpec spec;
  (*spec.mutable_env())["BULWARK_NATS_URL"] = "nats://evil:1";
  (*spec.mutable_env())["FOO"] = "a'b";
  (*spec.mutable_env())["PATH"] = "/custom";
  spec.set_policy("version: 1\n");
  spec.add_command("sh");
  spec.add_command("-c");
  spec.add_command("echo hi; exit 3");
  spec.add_providers("github");
  spec.mutable_resources()->set_pids(77);
  auto s = run_script("sb1", spec, "nats://10.0.2.2:4222", {"PATH=/img/bin", "LANG=C"});
  CHECK(s.find("pids_max=77\n") != std::string::npos);
  CHECK(s.find("set -- env -i") != std::string::npos);
  // The user's env cannot point the supervisor elsewhere: ours come last and replace theirs.
  CHECK(s.find("nats://evil") == std::string::npos);
  CHECK(s.find("'BULWARK_NATS_URL=nats://10.0.2.2:4222'") > s.find("'FOO=a'\\''b'"));
  CHECK(s.find("'BULWARK_SANDBOX_ID=sb1'") != std::string::npos);
  CHECK(s.find("'BULWARK_POLICY_YAML=version: 1\n'") > s.find("BULWARK_NATS_URL"));
  CHECK(s.find("'LANG=C'") != std::string::npos);
  CHECK(s.find("'PATH=/custom'") != std::string::npos);  // the sandbox's env over the image's
  CHECK(s.find("PATH=/img/bin") == std::string::npos);
  CHECK(s.find("'/.bulwark/lib/ld.so' --library-path '/.bulwark/lib' '/.bulwark/bin/bulwark-supervisor' "
               "--provider-env required -- 'sh' '-c' 'echo hi; exit 3'\n") != std::string::npos);

  v1::SandboxSpec bare;
  auto b = run_script("sb2", bare, "nats://h:1", {});
  CHECK(b.find("pids_max=4096") != std::string::npos);
  CHECK(b.find("--provider-env") == std::string::npos);
  CHECK(b.find("BULWARK_POLICY_YAML") == std::string::npos);
  CHECK(b.find("-- sleep infinity\n") != std::string::npos);
  CHECK(b.find("--keep-after-exit") == std::string::npos);
  bare.set_keep_after_exit(true);
  CHECK(run_script("sb2", bare, "nats://h:1", {}).find("'/.bulwark/bin/bulwark-supervisor' --keep-after-exit=true -- sleep") !=
        std::string::npos);
}

TEST_CASE("guest NATS URL: the host's loopback is 10.0.2.2 from inside") {
  CHECK(guest_nats_url("nats://127.0.0.1:4222") == "nats://10.0.2.2:4222");
  CHECK(guest_nats_url("nats://localhost:4222") == "nats://10.0.2.2:4222");
  CHECK(guest_nats_url("nats://u:p@127.0.0.1:4222") == "nats://u:p@10.0.2.2:4222");
  CHECK(guest_nats_url("nats://[::1]:4222") == "nats://10.0.2.2:4222");
  CHECK(guest_nats_url("nats://nats.example:4222") == "nats://nats.example:4222");
  CHECK(guest_nats_url("nats://10.1.2.3:4222") == "nats://10.1.2.3:4222");
}

TEST_CASE("check_spec refuses GPUs with the VFIO pointer and rounds cpus") {
  v1::SandboxSpec spec;
  spec.set_image("localhost/bulwark/base:latest");
  CHECK(check_spec(spec).empty());
  spec.mutable_resources()->set_gpus(1);
  try {
    check_spec(spec);
    FAIL("GPUs accepted");
  } catch (const Error& e) {
    CHECK(e.field() == "resources.gpus");
    CHECK(e.code() == Code::kInvalidArgument);
    CHECK(std::string(e.what()).find("VFIO") != std::string::npos);
    CHECK(std::string(e.what()).find("docs/drivers.md") != std::string::npos);
  }
  spec.mutable_resources()->set_gpus(0);
  spec.mutable_resources()->set_cpus(0.5);
  auto w = check_spec(spec);
  REQUIRE(w.size() == 1);
  CHECK(w[0].find("rounded up to 1") != std::string::npos);
  spec.clear_image();
  CHECK_THROWS_AS(check_spec(spec), Error);
}
