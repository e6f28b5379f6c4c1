#pragma once
// driver-docker's backend: the driver contract (shared/driver_host.h) as Docker Engine API calls.
// It finds its containers by the label io.bulwark.driver_id, so it keeps nothing a restart loses.
#include <map>
#include <mutex>

#include "services/driver-docker/container_spec.h"
#include "services/driver-docker/docker_client.h"
#include "shared/driver_host.h"

namespace bulwark::docker {

struct BackendOptions {
  std::string socket_path;
  // The NATS URL sandboxes use. Empty: the driver's own, with a loopback host replaced by the
  // network's gateway (a container's loopback is its own), checked reachable at start.
  std::string sandbox_nats_url;
  std::string nats_url;  // the driver's own
  ContainerConfig container;  // nats_url is filled in at start
};

class DockerBackend : public DriverBackend {
 public:
  // Pings dockerd and prepares the managed network; throws what to do when either fails.
  explicit DockerBackend(BackendOptions o);

  void capabilities(v1::DriverCapabilities& caps) const override;
  std::vector<std::string> validate(const v1::SandboxSpec& spec) override;
  v1::DriverCreateReply create(const std::string& sandbox_id, const v1::SandboxSpec& spec) override;
  bool remove(const std::string& sandbox_id) override;
  bool stop(const std::string& sandbox_id, std::chrono::milliseconds grace) override;
  std::string start(const std::string& sandbox_id) override;
  std::optional<v1::WorkloadStatus> get(const std::string& sandbox_id) override;
  std::vector<v1::WorkloadStatus> list() override;

 private:
  void prepare_network();
  v1::DriverCreateReply adopt(const std::string& sandbox_id, const nlohmann::json& inspected);

  BackendOptions o_;
  DockerClient docker_;
  // Docker's list has no exit code: an ended container is inspected once, and its code kept here
  // (by container id and the time it finished) until it runs again.
  std::mutex mu_;
  std::map<std::string, std::pair<int, std::string>> ended_;  // workload_id -> exit code, reason
};

}  // namespace bulwark::docker
