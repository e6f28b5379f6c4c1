#pragma once
// Which compute drivers a local gateway starts: --drivers / BULWARK_DRIVERS when given, else what
// the host has, in OpenShell's order: Kubernetes (in-cluster service account or a kubeconfig),
// then Podman, then Docker (CLI present or socket found). vm is never chosen on its own: it must
// be asked for. Pure, apart from probe_host().
#include <string>
#include <vector>

namespace bulwark::cli {

struct HostProbe {
  bool in_cluster = false;   // KUBERNETES_SERVICE_HOST and a service-account token
  bool kubeconfig = false;   // $KUBECONFIG or ~/.kube/config exists
  bool podman_cli = false;
  bool podman_socket = false;
  bool docker_cli = false;
  bool docker_socket = false;
};

HostProbe probe_host();

struct DriverChoice {
  std::vector<std::string> drivers;  // "kubernetes", "podman", "docker", "vm"
  std::string why;                   // one line for the user: what was asked for or found
};

// flag: --drivers (comma-separated); env: BULWARK_DRIVERS; the flag wins. Throws CliError(kUsage)
// naming the bad word for an unknown driver, and CliError(kFailure) saying what to install when
// nothing was asked for and nothing is found.
DriverChoice select_drivers(const std::string& flag, const std::string& env, const HostProbe& host);

}  // namespace bulwark::cli
