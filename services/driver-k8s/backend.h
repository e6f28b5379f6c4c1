#pragma once
// driver-k8s's half of the driver contract (shared/driver_host.h): a sandbox is a namespaced
// agents.x-k8s.io Sandbox resource. The backend keeps an informer-style cache (list, then watch
// from its resourceVersion, relist when the watch expires) so the host's poll costs no API call;
// everything it knows is rebuilt from the labelled resources after a restart.
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "services/driver-k8s/kube_client.h"
#include "services/driver-k8s/sandbox_resource.h"
#include "shared/driver_host.h"

namespace bulwark::k8s {

struct BackendOptions {
  ResourceConfig resource;
  std::string version;       // "" = discover (v1beta1, else v1alpha1)
  uint32_t gpus = 0;         // GPUs the cluster gives this driver (for gpus_free); 0 = not counted
  int watch_timeout_s = 60;  // how long one watch request lasts before it is renewed
};

class K8sBackend : public DriverBackend {
 public:
  // Discovers the API version (throws Error saying what to install or fix when the cluster cannot
  // be used), then starts the informer.
  K8sBackend(std::unique_ptr<KubeClient> client, BackendOptions o);
  ~K8sBackend() override;
  const std::string& version() const { return o_.version; }

  void capabilities(v1::DriverCapabilities& caps) const override;
  std::vector<std::string> validate(const v1::SandboxSpec& spec) override;
  v1::DriverCreateReply create(const std::string& sandbox_id, const v1::SandboxSpec& spec) override;
  bool remove(const std::string& sandbox_id) override;
  bool stop(const std::string& sandbox_id, std::chrono::milliseconds grace) override;
  std::string start(const std::string& sandbox_id) override;
  std::optional<v1::WorkloadStatus> get(const std::string& sandbox_id) override;
  std::vector<v1::WorkloadStatus> list() override;
  uint32_t gpus_free() override;

 private:
  void inform();  // the informer thread
  v1::WorkloadStatus status_of(const nlohmann::json& obj);
  bool owned(const nlohmann::json& obj) const;

  std::unique_ptr<KubeClient> client_;
  BackendOptions o_;
  std::string selector_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool synced_ = false;
  std::map<std::string, nlohmann::json> cache_;  // resource name -> object
  // resource name -> (resourceVersion, status) of workloads seen ended
  std::map<std::string, std::pair<std::string, v1::WorkloadStatus>> ended_;
  std::thread informer_;
};

}  // namespace bulwark::k8s
