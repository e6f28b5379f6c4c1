#include <doctest/doctest.h>

#include <cstdlib>

#include "services/driver-docker/docker_client.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::docker;

TEST_CASE("the socket: DOCKER_HOST=unix://PATH, else /var/run/docker.sock; any other DOCKER_HOST is none") {
  const char* saved = std::getenv("DOCKER_HOST");
  std::string keep = saved ? saved : "";
  ::unsetenv("DOCKER_HOST");
  CHECK(default_socket() == "/var/run/docker.sock");
  ::setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock", 1);
  CHECK(default_socket() == "/run/user/1000/docker.sock");
  ::setenv("DOCKER_HOST", "tcp://10.0.0.1:2376", 1);
  CHECK(default_socket().empty());
  if (saved) ::setenv("DOCKER_HOST", keep.c_str(), 1);
  else ::unsetenv("DOCKER_HOST");
}

TEST_CASE("no socket: a clear unavailable error saying how to start dockerd") {
  DockerClient c("/nonexistent/docker.sock");
  try {
    c.ping();
    FAIL("ping succeeded");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnavailable);
    std::string m = e.what();
    CHECK(m.find("no Docker socket at /nonexistent/docker.sock") != std::string::npos);
    CHECK(m.find("start dockerd") != std::string::npos);
    CHECK(m.find("apt-get install -y docker.io") != std::string::npos);
  }
}
