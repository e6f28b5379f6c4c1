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
