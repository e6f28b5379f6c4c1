#include <doctest/doctest.h>

#include "cli/client.h"
#include "cli/driver_select.h"

using namespace bulwark::cli;

TEST_CASE("auto-detection order: kubernetes, then podman, then docker; never vm") {
  HostProbe all{.in_cluster = false, .kubeconfig = true, .podman_cli = true, .podman_socket = true, .docker_cli = true,
                .docker_socket = true};
  CHECK(select_drivers("", "", all).drivers == std::vector<std::string>{"kubernetes"});
  all.kubeconfig = false;
  CHECK(select_drivers("", "", all).drivers == std::vector<std::string>{"podman"});
  all.podman_cli = all.podman_socket = false;
  CHECK(select_drivers("", "", all).drivers == std::vector<std::string>{"docker"});
  HostProbe socket_only{.docker_socket = true};
  auto c = select_drivers("", "", socket_only);
  CHECK(c.drivers == std::vector<std::string>{"docker"});
  CHECK(c.why == "a docker socket was found");
  try {
    select_drivers("", "", HostProbe{});
    FAIL("chose a driver on a host with none");
  } catch (const CliError& e) {
    CHECK(e.exit_code == kFailure);
    CHECK(e.message.find("--drivers vm") != std::string::npos);
  }
}

TEST_CASE("--drivers wins over BULWARK_DRIVERS, which wins over detection; unknown words are named") {
  HostProbe podman{.podman_cli = true};
  CHECK(select_drivers("vm", "docker", podman).drivers == std::vector<std::string>{"vm"});
  CHECK(select_drivers("", "docker,vm,docker", podman).drivers == std::vector<std::string>{"docker", "vm"});
  CHECK(select_drivers("k8s", "", podman).drivers == std::vector<std::string>{"kubernetes"});
  CHECK(select_drivers("", "docker", podman).why == "asked for by BULWARK_DRIVERS");
  try {
    select_drivers("podman,lxc", "", podman);
    FAIL("accepted lxc");
  } catch (const CliError& e) {
    CHECK(e.exit_code == kUsage);
    CHECK(e.message == "--drivers: 'lxc' is not one of docker, podman, kubernetes, vm");
  }
  CHECK_THROWS_AS(select_drivers("", "podman,", podman), CliError);  // an empty word
}
