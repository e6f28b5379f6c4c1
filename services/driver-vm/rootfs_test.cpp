#include "services/driver-vm/rootfs.h"

#include "services/driver-vm/backend.h"

#include <doctest/doctest.h>

#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::vm;

TEST_CASE("ext4 size: content, a quarter more, headroom, whole MiB") {
  CHECK(ext4_size(0, 0) == 16ull << 20);
  CHECK(ext4_size(4ull << 20, 1ull << 30) == (5ull << 20) + (1ull << 30) + (16ull << 20));
  CHECK(ext4_size(1, 0) % (1 << 20) == 0);
}

TEST_CASE("an image engine that is not there says how to start it") {
  ImageSource src("/nonexistent/podman.sock", "podman");
  try {
    src.inspect("localhost/bulwark/base:latest");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnavailable);
    CHECK(std::string(e.what()).find("podman system service") != std::string::npos);
  }
}

TEST_CASE("run_tool reports a failing tool's output and a missing one's package") {
  CHECK_NOTHROW(run_tool({"true"}, "coreutils"));
  try {
    run_tool({"sh", "-c", "echo broken >&2; exit 4"}, "sh");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("exited 4") != std::string::npos);
    CHECK(std::string(e.what()).find("broken") != std::string::npos);
  }
  try {
    run_tool({"/no/such/mkfs"}, "apt-get install -y e2fsprogs");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("e2fsprogs") != std::string::npos);
  }
}

TEST_CASE("--accel: tcg needs nothing; anything else than auto|kvm|tcg is refused") {
  VmConfig c;
  CHECK(resolve_accel("tcg", c) == "tcg");
  CHECK_THROWS_AS(resolve_accel("hvf", c), Error);
}
