// bulwark-driver-k8s: runs sandboxes as agents.x-k8s.io Sandbox resources. See README.md.
#include <spdlog/spdlog.h>

#include "services/driver-k8s/backend.h"
#include "shared/driver_host.h"
#include "shared/service.h"

int main(int argc, char** argv) {
  bulwark::Service svc("driver-kubernetes");
  std::string ns, kubeconfig, context, api_server, driver_id, sandbox_nats_url, supervisor_image = "localhost/bulwark/supervisor:latest";
  std::string storage_size, storage_class, pull_policy = "IfNotPresent";
  uint32_t capacity = 16, gpus = 0;
  double heartbeat_s = 1, poll_s = 1;
  svc.flags()
      .text("namespace", &ns, "namespace of the Sandbox resources (default: the kubeconfig context's, else default)")
      .text("kubeconfig", &kubeconfig, "kubeconfig file (default: in-cluster service account, else $KUBECONFIG, else ~/.kube/config)")
      .text("context", &context, "kubeconfig context (default: its current-context)")
      .text("api-server", &api_server, "API server URL, overriding the kubeconfig's (e.g. https://10.0.0.1:6443)")
      .text("driver-id", &driver_id, "this driver's id, a NATS subject token (default: kubernetes-<namespace>)")
      .text("supervisor-image", &supervisor_image,
            "image holding the supervisor bundle at /.bulwark and a cp (copied into each pod by an init container)")
      .text("sandbox-nats-url", &sandbox_nats_url, "NATS URL as reached from inside a pod, e.g. a Service address (default: --nats-url)")
      .text("storage-size", &storage_size, "size of a persistent /sandbox volume per sandbox, e.g. 10Gi (default: none)")
      .text("storage-class", &storage_class, "StorageClass of the /sandbox volume (default: the cluster's default)")
      .choice("image-pull-policy", &pull_policy, "imagePullPolicy of the sandbox and supervisor images", {"IfNotPresent", "Always", "Never"})
      .count("capacity", &capacity, "sandboxes this driver runs at once", 1, 100000)
      .count("gpus", &gpus, "NVIDIA GPUs the cluster gives this driver, for the heartbeat's gpus_free (0: not counted)", 0, 100000)
      .seconds("heartbeat", &heartbeat_s, "time between heartbeats", 0.05, 60)
      .seconds("poll", &poll_s, "time between state reconciliations", 0.05, 60);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) -> std::unique_ptr<bulwark::Component> {
    if (!storage_size.empty() && !bulwark::k8s::is_quantity(storage_size))
      throw bulwark::Error(bulwark::Code::kInvalidArgument,
                           "--storage-size '" + storage_size + "' is not a Kubernetes quantity such as 10Gi or 500M", "storage_size");
    auto cfg = bulwark::k8s::load_kube_config(kubeconfig, context);
    if (!api_server.empty()) cfg.server = api_server;
    auto client = std::make_unique<bulwark::k8s::KubeClient>(cfg, ns);
    bulwark::k8s::BackendOptions bo;
    bo.gpus = gpus;
    auto& rc = bo.resource;
    rc.namespace_name = client->namespace_name();
    rc.driver_id = bulwark::normalize_driver_id(driver_id.empty() ? "kubernetes-" + rc.namespace_name : driver_id);
    rc.nats_url = sandbox_nats_url.empty() ? svc.common().nats_url : sandbox_nats_url;
    rc.supervisor_image = supervisor_image;
    rc.storage_size = storage_size;
    rc.storage_class = storage_class;
    rc.image_pull_policy = pull_policy;
    bulwark::DriverHostOptions ho;
    ho.driver_id = rc.driver_id;
    ho.kind = "kubernetes";
    ho.capacity = capacity;
    ho.labels = {{"namespace", rc.namespace_name}};
    ho.heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000));
    ho.poll = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
    auto backend = std::make_unique<bulwark::k8s::K8sBackend>(std::move(client), bo);
    spdlog::info("driver {} serves bulwark.driver.{}.*", ho.driver_id, ho.driver_id);
    return std::make_unique<bulwark::DriverHost>(bus, std::move(backend), ho);
  });
}
