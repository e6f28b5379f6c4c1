#include "services/driver-vm/vm_state.h"

#include <doctest/doctest.h>

#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::vm;

TEST_CASE("meta.json round trip") {
  VmMeta m;
  m.sandbox_id = "sb1";
  m.driver_id = "vm-a";
  m.spec.set_image("img");
  m.spec.add_command("true");
  (*m.spec.mutable_env())["K"] = "V";
  m.image_id = "sha256:abc";
  m.base_disk = "/s/images/abc.ext4";
  m.image_env = {"PATH=/bin"};
  m.stopped = true;
  m.created_ms = 42;
  auto back = meta_from_json(meta_to_json(m));
  CHECK(back.sandbox_id == "sb1");
  CHECK(back.driver_id == "vm-a");
  CHECK(back.spec.image() == "img");
  CHECK(back.spec.env().at("K") == "V");
  CHECK(back.image_id == "sha256:abc");
  CHECK(back.base_disk == "/s/images/abc.ext4");
  CHECK(back.image_env == std::vector<std::string>{"PATH=/bin"});
  CHECK(back.stopped);
  CHECK(back.created_ms == 42);
  CHECK_THROWS_AS(meta_from_json("{}"), Error);
  CHECK_THROWS_AS(meta_from_json("not json"), Error);
}

TEST_CASE("status: running, exit code, stopped, ended without a code") {
  VmMeta m;
  m.sandbox_id = "sb1";
  Observed o;
  o.qemu_alive = true;
  auto st = status_of(m, o);
  CHECK(st.running());
  CHECK_FALSE(st.exited());
  CHECK(st.workload_id() == "bulwark-sb1");
  CHECK(st.sandbox_id() == "sb1");

  o = Observed{};
  o.booting = true;  // the driver is starting QEMU: not ended
  CHECK(status_of(m, o).running());

  o = Observed{};
  o.exit_code_file = "3\n";
  st = status_of(m, o);
  CHECK(st.exited());
  CHECK(st.exit_code() == 3);
  CHECK(st.reason().empty());

  o = Observed{};
  m.stopped = true;
  st = status_of(m, o);
  CHECK(st.exited());
  CHECK(st.exit_code() == 143);
  CHECK(st.reason() == "stopped by the driver");

  m.stopped = false;
  o.exit_code_file = "garbage";
  st = status_of(m, o);
  CHECK(st.exit_code() == 255);
  CHECK(st.reason().find("console.log") != std::string::npos);
  o.exit_code_file.reset();
  o.console_has_panic = true;
  CHECK(status_of(m, o).reason().find("panicked") != std::string::npos);
}

TEST_CASE("pidfile and /proc cmdline checks") {
  CHECK(parse_pidfile("1234\n") == 1234);
  CHECK_FALSE(parse_pidfile(""));
  CHECK_FALSE(parse_pidfile("1"));
  CHECK_FALSE(parse_pidfile("12x"));
  VmPaths p{"/s/sandboxes/sb1"};
  auto cmdline = [](std::vector<std::string> args) {
    std::string out;
    for (const auto& a : args) out += a + std::string(1, '\0');
    return out;
  };
  std::string ours = cmdline({"qemu-system-x86_64", "-name", "bulwark-sb1", "-drive",
                              "id=disk,file=/s/sandboxes/sb1/disk.qcow2,format=qcow2,if=none"});
  CHECK(cmdline_is_vm(ours, "sb1", p));
  CHECK_FALSE(cmdline_is_vm(ours, "sb2", VmPaths{"/s/sandboxes/sb2"}));
  // A reused pid running something else.
  CHECK_FALSE(cmdline_is_vm(cmdline({"sleep", "100"}), "sb1", p));
  // Same name but another state dir (another driver's VM).
  CHECK_FALSE(cmdline_is_vm(ours, "sb1", VmPaths{"/other/sandboxes/sb1"}));
}
