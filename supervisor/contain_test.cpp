#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>

#include "supervisor/contain.h"

using namespace bulwark::supervisor;

TEST_CASE("the agent's environment points every proxy variable at the supervisor's proxy") {
  auto env = with_proxy_env({"HTTP_PROXY=http://elsewhere:1", "HOME=/sandbox"}, "http://10.200.0.1:3128");
  auto has = [&](const std::string& kv) { return std::find(env.begin(), env.end(), kv) != env.end(); };
  CHECK(has("HOME=/sandbox"));
  CHECK(has("HTTP_PROXY=http://10.200.0.1:3128"));
  CHECK_FALSE(has("HTTP_PROXY=http://elsewhere:1"));  // the agent cannot route around it by env
  for (const char* k : {"HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"})
    CHECK(has(std::string(k) + "=http://10.200.0.1:3128"));
  CHECK(has("NO_PROXY=localhost,127.0.0.1"));
  if (::access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0)
    CHECK(has("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));
}

TEST_CASE("the default filesystem policy keeps system directories read-only and nothing broad writable") {
  auto fs = default_filesystem_policy();
  CHECK(fs.include_workdir);
  CHECK(std::find(fs.read_only.begin(), fs.read_only.end(), "/usr") != fs.read_only.end());
  CHECK(std::find(fs.read_write.begin(), fs.read_write.end(), "/tmp") != fs.read_write.end());
  CHECK(std::find(fs.read_write.begin(), fs.read_write.end(), "/") == fs.read_write.end());
  CHECK(std::find(fs.read_write.begin(), fs.read_write.end(), "/etc") == fs.read_write.end());
}

// The covering of the host's shared directories, in a forked child's own mount namespace.
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <fstream>

#include "shared/util.h"
#include "supervisor/child_probe_test.h"
#include "supervisor/mounts.h"

TEST_CASE("hide_shared_dirs: /tmp is covered; policy paths beneath it come back, but never through a symlink") {
  bulwark::TempDir host("bulwark-mounts");  // in the host's /tmp
  std::string real = host.file("real"), link = host.file("link"), other = host.file("other");
  ::mkdir(real.c_str(), 0755);
  ::mkdir(other.c_str(), 0755);
  std::ofstream(real + "/kept") << "kept\n";
  REQUIRE(::symlink(real.c_str(), link.c_str()) == 0);
  auto out = bulwark::supervisor::testing::run_in_child([&](bulwark::supervisor::testing::Probe& p) {
    p.check("unshare(CLONE_NEWNS)", ::unshare(CLONE_NEWNS) == 0);
    p.check("make / private", ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
    hide_shared_dirs({real, link});
    struct stat st {};
    p.check("the policy path is bound back", ::stat((real + "/kept").c_str(), &st) == 0);
    p.check("a path through a symlink is not bound back", ::lstat(link.c_str(), &st) != 0 && errno == ENOENT);
    p.check("the rest of the host's /tmp is gone", ::stat(other.c_str(), &st) != 0 && errno == ENOENT);
    int fd = ::open("/tmp/bulwark-mounts-new", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    p.check("the new /tmp is writable", fd >= 0);
    if (fd >= 0) ::close(fd);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  struct stat st {};
  CHECK(::stat("/tmp/bulwark-mounts-new", &st) != 0);  // the host's /tmp never saw it
}
