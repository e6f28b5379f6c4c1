#pragma once
// driver-podman's backend: the driver contract (shared/driver_host.h) as Podman API (libpod v4)
// calls. It finds its containers by the label io.bulwark.driver_id, so it keeps nothing a restart
// loses.
#include "services/driver-podman/container_spec.h"
#include "services/driver-podman/podman_client.h"
#include "shared/driver_host.h"

namespace bulwark::podman {

class PodmanBackend : public DriverBackend {
 public:
  // Pings podman; throws how to start its API service when it does not answer.
  PodmanBackend(std::string socket_path, ContainerConfig c);

  void capabilities(v1::DriverCapabilities& caps) const override;
  std::vector<std::string> validate(const v1::SandboxSpec& spec) override;
  v1::DriverCreateReply create(const std::string& sandbox_id, const v1::SandboxSpec& spec) override;
  bool remove(const std::string& sandbox_id) override;
  bool stop(const std::string& sandbox_id, std::chrono::milliseconds grace) override;
  std::string start(const std::string& sandbox_id) override;
  std::optional<v1::WorkloadStatus> get(const std::string& sandbox_id) override;
  std::vector<v1::WorkloadStatus> list() override;

 private:
  v1::DriverCreateReply adopt(const std::string& sandbox_id, const nlohmann::json& inspected);

  PodmanClient podman_;
  ContainerConfig c_;
};

// An entry of podman's container list as the contract's status.
v1::WorkloadStatus status_from_list(const nlohmann::json& listed);

}  // namespace bulwark::podman
