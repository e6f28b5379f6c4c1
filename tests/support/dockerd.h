#pragma once
// A private dockerd for tests: its own data-root, exec-root, pidfile, config and socket in a temp
// directory, so it neither touches nor depends on a dockerd the host may run. It leaves the
// host's network alone: no default bridge (docker0), no iptables rules, no ip_forward change;
// containers use user-defined bridge networks, which need none of them to reach the host
// (BULWARK_TEST_DOCKERD_FIREWALL=1 runs it with docker's own iptables rules instead).
// Stopping it removes every container and network it made, stops it, and unmounts what it left.
#include <chrono>
#include <string>

#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::testing {

class Dockerd {
 public:
  // Starts dockerd and waits until its API answers. Throws Error saying what to install (the
  // docker.io package) or showing dockerd's log.
  Dockerd();
  ~Dockerd();
  Dockerd(const Dockerd&) = delete;
  Dockerd& operator=(const Dockerd&) = delete;

  const std::string& socket() const { return socket_; }
  std::chrono::milliseconds startup_time() const { return startup_; }
  std::string log_tail() const;

  // Builds the busybox-static root filesystem that scripts/build-base-image builds for podman and
  // imports it as `image` through the Engine API (POST /images/create?fromSrc=-), skipping the
  // work when the image is there. `extra`: shell commands run before the import, with $r the
  // root filesystem's directory (to add files to it).
  void import_busybox_image(const std::string& image, const std::string& extra = "");
  // `docker rm -f`: SIGKILL and remove at once, as an operator would behind Bulwark's back.
  // False when there was no such container.
  bool force_remove(const std::string& container);
  // `docker logs`: stdout and stderr as docker keeps them (with its 8-byte frame headers).
  std::string container_logs(const std::string& container);

 private:
  void cleanup_engine_objects();  // containers and networks, while dockerd still runs
  void unmount_leftovers();

  TempDir dir_;
  std::string socket_;
  Process proc_;
  std::chrono::milliseconds startup_{0};
};

}  // namespace bulwark::testing
