#include "tests/support/dockerd.h"

#include <httplib.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shared/error.h"
#include "tests/support/support.h"

namespace bulwark::testing {

namespace {
httplib::Client api(const std::string& socket) {
  httplib::Client c(socket);
  c.set_address_family(AF_UNIX);
  c.set_default_headers({{"Host", "docker"}});
  c.set_connection_timeout(5);
  c.set_read_timeout(60);
  c.set_write_timeout(60);
  return c;
}
std::string q(const std::string& s) { return httplib::detail::encode_query_param(s); }
}  // namespace

Dockerd::Dockerd() : dir_("bulwark-dockerd") {
  if (::geteuid() != 0)
    throw Error(Code::kFailedPrecondition, "dockerd needs root: run the docker driver's tests as root (or with sudo)");
  require_binary("dockerd", "docker.io");
  require_binary("containerd", "docker.io");
  require_binary("runc", "docker.io");
  socket_ = dir_.file("docker.sock");
  std::ofstream(dir_.file("daemon.json")) << "{}\n";  // not the host's /etc/docker/daemon.json
  // A containerd the host already runs would be shared: namespaces keep this daemon's apart.
  std::string ns = "bulwark-test-" + random_hex(4);
  std::vector<std::string> argv = {"dockerd", "--data-root", dir_.file("data"), "--exec-root", dir_.file("exec"), "--pidfile",
                                   dir_.file("docker.pid"), "--host", "unix://" + socket_, "--config-file",
                                   dir_.file("daemon.json"), "--bridge=none", "--containerd-namespace", ns,
                                   "--containerd-plugins-namespace", ns + "-plugins"};
  // BULWARK_TEST_DOCKERD_FIREWALL=1: docker's own iptables rules and ip_forward, as a system
  // dockerd has them (they stay on the host after the test).
  const char* fw = std::getenv("BULWARK_TEST_DOCKERD_FIREWALL");
  if (!fw || std::string(fw) != "1") argv.insert(argv.end(), {"--iptables=false", "--ip-forward=false", "--ip-masq=false"});
  auto t0 = std::chrono::steady_clock::now();
  proc_ = Process::spawn({.argv = argv, .output_file = dir_.file("dockerd.log")});
  bool up = wait_until([&] {
    if (!proc_.running() || proc_.try_wait()) return true;  // it died: stop waiting
    auto r = api(socket_).Get("/_ping");
    return r && r->status == 200;
  }, std::chrono::seconds(30));
  startup_ = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  auto r = api(socket_).Get("/_ping");
  if (!up || !r || r->status != 200)
    throw Error(Code::kUnavailable, "dockerd did not start (apt-get install -y docker.io, or scripts/install-deps):\n" + log_tail());
}

Dockerd::~Dockerd() {
  try {
    cleanup_engine_objects();
  } catch (const std::exception&) {
  }
  if (proc_.running()) {
    proc_.signal(SIGTERM);
    if (!proc_.wait_for(std::chrono::seconds(20))) proc_.stop(std::chrono::milliseconds(0));
  }
  // A dockerd that had to be killed leaves its containerd behind.
  std::ifstream pidfile(dir_.file("exec/containerd/containerd.pid"));
  pid_t containerd = 0;
  if (pidfile >> containerd && containerd > 1 && ::kill(containerd, 0) == 0) {
    std::ifstream comm("/proc/" + std::to_string(containerd) + "/comm");
    std::string name;
    if (comm >> name && name == "containerd") ::kill(containerd, SIGKILL);
  }
  unmount_leftovers();
}

void Dockerd::cleanup_engine_objects() {
  auto c = api(socket_);
  if (auto r = c.Get("/v1.41/containers/json?all=true"); r && r->status == 200)
    for (const auto& x : nlohmann::json::parse(r->body)) c.Delete("/v1.41/containers/" + x.value("Id", "") + "?force=true&v=true");
  // A user-defined network's bridge interface outlives dockerd on the host: remove them first.
  if (auto r = c.Get("/v1.41/networks"); r && r->status == 200)
    for (const auto& n : nlohmann::json::parse(r->body)) {
      std::string name = n.value("Name", "");
      if (name != "bridge" && name != "host" && name != "none") c.Delete("/v1.41/networks/" + n.value("Id", ""));
    }
}

void Dockerd::unmount_leftovers() {
  std::ifstream mi("/proc/self/mountinfo");
  std::vector<std::string> mine;
  std::string line;
  while (std::getline(mi, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    if (point.rfind(dir_.path() + "/", 0) == 0) mine.push_back(point);
  }
  // Deepest first.
  std::sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& p : mine) ::umount2(p.c_str(), MNT_DETACH);
}

bool Dockerd::force_remove(const std::string& container) {
  auto r = api(socket_).Delete("/v1.41/containers/" + container + "?force=true&v=true");
  if (!r || (r->status != 204 && r->status != 404))
    throw Error(Code::kInternal, "docker rm -f " + container + ": " + (r ? std::to_string(r->status) + " " + r->body : "no reply"));
  return r->status == 204;
}

std::string Dockerd::container_logs(const std::string& container) {
  auto r = api(socket_).Get("/v1.41/containers/" + container + "/logs?stdout=true&stderr=true");
  if (!r || r->status != 200)
    throw Error(Code::kInternal, "docker logs " + container + ": " + (r ? std::to_string(r->status) + " " + r->body : "no reply"));
  return r->body;
}

std::string Dockerd::log_tail() const {
  auto s = read_file(dir_.file("dockerd.log"));
  return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
}

void Dockerd::import_busybox_image(const std::string& image, const std::string& extra) {
  auto c = api(socket_);
  if (auto r = c.Get("/v1.41/images/" + image + "/json"); r && r->status == 200) return;
  // The same root filesystem as the podman base image (scripts/build-base-image), as a tarball.
  TempDir build("bulwark-base-image");
  std::string tar = build.file("rootfs.tar");
  std::string cmd = std::string(BULWARK_SOURCE_DIR) + "/scripts/build-base-image --tar " + tar +
                    (extra.empty() ? "" : " --extra '" + extra + "'");
  if (std::system(cmd.c_str()) != 0)
    throw Error(Code::kFailedPrecondition, "scripts/build-base-image --tar failed: run scripts/install-deps (busybox-static)");
  std::string body = read_file(tar);
  auto colon = image.rfind(':');
  if (colon == std::string::npos || image.find('/', colon) != std::string::npos) colon = image.size();
  std::string repo = image.substr(0, colon), tag = colon < image.size() ? image.substr(colon + 1) : "latest";
  auto r = c.Post("/v1.41/images/create?fromSrc=-&repo=" + q(repo) + "&tag=" + q(tag) + "&changes=" + q("CMD [\"/bin/sh\"]"),
                  body, "application/x-tar");
  if (!r || r->status != 200 || r->body.find("\"error\"") != std::string::npos)
    throw Error(Code::kInternal, "importing " + image + " into dockerd failed: " +
                                     (r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error())));
}

}  // namespace bulwark::testing
