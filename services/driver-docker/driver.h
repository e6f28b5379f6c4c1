#pragma once
// driver-docker: turns bulwark.driver.<driver_id>.{create,delete,get,list} into Docker Engine API
// calls, heartbeats its capacity (kind "docker"), and reports what its containers do (running,
// exited with a code, gone). The same contract as driver-podman (docs/drivers.md); a restarted
// driver reconciles by listing the containers labelled as its own.
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "bulwark/v1/driver.pb.h"
#include "services/driver-docker/container_spec.h"
#include "services/driver-docker/docker_client.h"
#include "shared/bus.h"
#include "shared/service.h"
#include "shared/work_queue.h"

namespace bulwark::docker {

struct DriverOptions {
  std::string socket_path;
  uint32_t capacity = 16;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds poll{1000};
  // The NATS URL sandboxes use. Empty: the driver's own, with a loopback host replaced by the
  // network's gateway (a container's loopback is its own), checked reachable at start.
  std::string sandbox_nats_url;
  std::string nats_url;  // the driver's own
  ContainerConfig container;  // nats_url is filled in at start
};

class DockerDriver : public Component {
 public:
  DockerDriver(Bus& bus, DriverOptions o);
  ~DockerDriver() override;
  void stop() override;

  v1::DriverCreateReply create(const v1::DriverCreateRequest& req);
  v1::DriverDeleteReply remove(const v1::DriverDeleteRequest& req);
  v1::WorkloadStatus get(const v1::DriverGetRequest& req);
  v1::DriverListReply list();

 private:
  void prepare_network();
  template <class Req, class Rep>
  void serve_async(const std::string& op, std::function<Rep(const Req&)> fn);
  void heartbeat(bool draining);
  void poll();  // one reconcile pass: report every change since the last pass
  void report(const std::string& sandbox_id, v1::ReportKind kind, const std::string& workload_id, int exit_code,
              const std::string& reason = {});
  v1::DriverCreateReply adopt(const std::string& sandbox_id, const nlohmann::json& inspected);
  std::string owned_filter() const;

  Bus& bus_;
  DriverOptions o_;
  DockerClient docker_;
  std::mutex mu_;
  std::map<std::string, v1::WorkloadStatus> known_;  // sandbox_id -> last reported state
  std::condition_variable cv_;
  bool stopping_ = false;
  WorkQueue work_;
  std::thread ticker_;
  std::vector<Subscription> subs_;
};

}  // namespace bulwark::docker
