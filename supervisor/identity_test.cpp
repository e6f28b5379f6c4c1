#include <doctest/doctest.h>

#include <fstream>

#include "shared/error.h"
#include "supervisor/identity.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::supervisor;

TEST_CASE("identities come from the sandbox's own passwd and group files; root is refused") {
  testing::TempDir dir;
  std::ofstream(dir.file("passwd")) << "root:x:0:0::/root:/bin/sh\nsandbox:x:1500:1600::/sandbox:/bin/sh\nagent:x:2000:2000::/:/bin/sh\n";
  std::ofstream(dir.file("group")) << "root:x:0:\nsandbox:x:1600:\nagents:x:2100:\n";
  auto id = resolve_identity(std::nullopt, std::nullopt, dir.file("passwd"), dir.file("group"));
  CHECK(id.uid == 1500);
  CHECK(id.gid == 1600);
  id = resolve_identity(std::string("agent"), std::string("agents"), dir.file("passwd"), dir.file("group"));
  CHECK(id.uid == 2000);
  CHECK(id.gid == 2100);
  id = resolve_identity(std::string("4242"), std::string("4343"), dir.file("passwd"), dir.file("group"));
  CHECK(id.uid == 4242);
  // An image without a sandbox user still never runs the agent as root.
  id = resolve_identity(std::nullopt, std::nullopt, dir.file("none"), dir.file("none"));
  CHECK(id.uid == kDefaultSandboxId);
  CHECK_THROWS_AS(resolve_identity(std::string("root"), std::nullopt, dir.file("passwd"), dir.file("group")), Error);
  CHECK_THROWS_AS(resolve_identity(std::string("0"), std::nullopt, dir.file("passwd"), dir.file("group")), Error);
  CHECK_THROWS_AS(resolve_identity(std::string("nobody-here"), std::nullopt, dir.file("passwd"), dir.file("group")), Error);
}
