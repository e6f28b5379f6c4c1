#include "cli/driver_select.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "cli/client.h"

namespace bulwark::cli {

namespace {
bool exists(const std::string& p) {
  std::error_code ec;
  return !p.empty() && std::filesystem::exists(p, ec);
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return false;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

const char* const kKnown[] = {"kubernetes", "podman", "docker", "vm"};
}  // namespace

HostProbe probe_host() {
  HostProbe h;
  h.in_cluster = !env("KUBERNETES_SERVICE_HOST").empty() && exists("/var/run/secrets/kubernetes.io/serviceaccount/token");
  std::string kubeconfig = env("KUBECONFIG");
  if (kubeconfig.empty() && !env("HOME").empty()) kubeconfig = env("HOME") + "/.kube/config";
  h.kubeconfig = exists(kubeconfig.substr(0, kubeconfig.find(':')));
  h.podman_cli = on_path("podman");
  std::string runtime_dir = env("XDG_RUNTIME_DIR");
  h.podman_socket = exists("/run/podman/podman.sock") || (!runtime_dir.empty() && exists(runtime_dir + "/podman/podman.sock"));
  h.docker_cli = on_path("docker");
  std::string docker_host = env("DOCKER_HOST");
  h.docker_socket = exists("/var/run/docker.sock") ||
                    (docker_host.rfind("unix://", 0) == 0 && exists(docker_host.substr(7)));
  return h;
}

DriverChoice select_drivers(const std::string& flag, const std::string& env_value, const HostProbe& host) {
  const std::string& asked = !flag.empty() ? flag : env_value;
  DriverChoice out;
  if (!asked.empty()) {
    size_t start = 0;
    while (start <= asked.size()) {
      size_t comma = asked.find(',', start);
      std::string word = asked.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (word == "k8s") word = "kubernetes";
      bool known = false;
      for (const char* k : kKnown) known = known || word == k;
      if (!known)
        throw CliError{kUsage, std::string(!flag.empty() ? "--drivers" : "BULWARK_DRIVERS") + ": '" + word +
                                   "' is not one of docker, podman, kubernetes, vm"};
      bool dup = false;
      for (const auto& d : out.drivers) dup = dup || d == word;
      if (!dup) out.drivers.push_back(word);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    out.why = std::string("asked for by ") + (!flag.empty() ? "--drivers" : "BULWARK_DRIVERS");
    return out;
  }
  if (host.in_cluster || host.kubeconfig) {
    out.drivers = {"kubernetes"};
    out.why = host.in_cluster ? "running in a Kubernetes cluster (service account)" : "a kubeconfig was found";
  } else if (host.podman_cli || host.podman_socket) {
    out.drivers = {"podman"};
    out.why = host.podman_cli ? "the podman CLI is installed" : "a podman API socket was found";
  } else if (host.docker_cli || host.docker_socket) {
    out.drivers = {"docker"};
    out.why = host.docker_cli ? "the docker CLI is installed" : "a docker socket was found";
  } else {
    throw CliError{kFailure,
                   "no compute driver found: install podman (apt-get install -y podman runc) or docker "
                   "(apt-get install -y docker.io), point KUBECONFIG at a cluster, or ask for one with --drivers "
                   "(vm is never chosen automatically: --drivers vm)"};
  }
  return out;
}

}  // namespace bulwark::cli
