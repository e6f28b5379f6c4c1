#pragma once
// A fake Kubernetes API server for driver-k8s's tests (no real one can run on these machines):
// HTTPS on loopback with a throwaway CA, bearer-token auth, discovery of agents.x-k8s.io (both
// versions, or v1alpha1 only), and namespaced `sandboxes` create/get/list/merge-patch/delete/watch
// plus a pod GET. Like a strict API server it VALIDATES every stored object against the real
// CRD's openAPIV3Schema for its version (tests/fixtures/k8s/agents.x-k8s.io_sandboxes.yaml) and
// answers 422 Status bodies naming the path; unknown fields are rejected. It stands in for the
// agent-sandbox controller too: a created or patched Sandbox gets its status (Ready condition,
// replicas) and pod, each change a watch event.
//
// Optionally it is the kubelet too (FakeKubeApiOptions::kubelet_podman_socket): each Sandbox that
// should run gets its pod template's agent container run by real podman (see FakeKubeApi::Kubelet
// in the .cpp for what is mapped and what is substituted), and the pod's status and the Ready
// condition follow that container's real state.
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_pki.h"

namespace httplib {
class Server;
}

namespace bulwark::testing {

// The CRD fixture (tests/fixtures/k8s/...).
std::string sandbox_crd_path();

// A structural validator for a CRD's per-version openAPIV3Schema: type, properties (unknown
// fields rejected), required, items, additionalProperties, enum, pattern, min/max(Length),
// int32/int64/date-time formats, x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields,
// and ObjectMeta rules for the root metadata (name, labels).
class CrdSchema {
 public:
  static CrdSchema load(const std::string& crd_yaml_path);
  std::vector<std::string> versions() const;
  // Every problem as "path: what" (path like spec.podTemplate.spec.containers[0].image); empty
  // when valid. An unknown version is a problem too.
  std::vector<std::string> validate(const std::string& version, const nlohmann::json& object) const;
  // Fills defaults (as the API server does before storing).
  void apply_defaults(const std::string& version, nlohmann::json& object) const;

 private:
  std::map<std::string, nlohmann::json> schemas_;  // version -> openAPIV3Schema
};

// RFC 7386 JSON merge patch.
void merge_patch(nlohmann::json& target, const nlohmann::json& patch);

struct FakeKubeApiOptions {
  std::vector<std::string> versions = {"v1beta1", "v1alpha1"};  // served by discovery
  std::string token = "bulwark-test-token";
  // Non-empty: play the kubelet with the podman service on this socket (podman_socket() in
  // tests/integration/suite.h). Without it a pod is "Running" the moment it is wanted.
  std::string kubelet_podman_socket;
  // The host's supervisor bundle, bind-mounted read-only where the init container would have
  // copied it from --supervisor-image (default: default_supervisor_bundle()).
  std::string kubelet_bundle_dir;
};

class FakeKubeApi {
 public:
  explicit FakeKubeApi(FakeKubeApiOptions o = {});
  ~FakeKubeApi();
  FakeKubeApi(const FakeKubeApi&) = delete;
  FakeKubeApi& operator=(const FakeKubeApi&) = delete;

  std::string url() const;  // https://127.0.0.1:PORT
  const std::string& ca_file() const { return pki_.ca_file; }
  // A kubeconfig in dir naming this server, its CA (by file), the token and namespace.
  std::string write_kubeconfig(const std::string& dir, const std::string& token, const std::string& ns) const;

  // A client certificate (PEM) the server's CA signed: it authenticates without a token.
  struct ClientCert {
    std::string cert_pem, key_pem;
  };
  ClientCert issue_client_cert(const std::string& user) const;

  // What the driver did.
  std::optional<nlohmann::json> object(const std::string& ns, const std::string& name);
  std::vector<nlohmann::json> objects(const std::string& ns);
  std::vector<std::string> rejections();  // every 422 message sent
  int unauthorized() const { return unauthorized_; }  // requests refused for their token
  int requests(const std::string& method) ;            // "POST", "PATCH", "GET?watch", ...

  // Behind the driver's back (kubectl, the controller, the kubelet).
  void put_object(const std::string& ns, nlohmann::json obj);  // validated; throws on a schema error
  bool delete_object(const std::string& ns, const std::string& name);
  void terminate_pod(const std::string& ns, const std::string& name, int exit_code, const std::string& reason);
  // Forgets the event history: a watch from any resourceVersion seen so far gets 410 Gone.
  void compact();
  // Ends every open watch stream (as an API server restart or its watch timeout does); the
  // driver has to watch again from the resourceVersion it last saw.
  void drop_watches();

 private:
  class Kubelet;
  friend class Kubelet;
  struct Event {
    uint64_t rv;
    std::string ns, type;
    nlohmann::json object;
  };
  void serve();
  // Under mu_: store (a new resourceVersion) and record the event.
  void store(const std::string& ns, nlohmann::json obj, const std::string& type);
  void reconcile(const std::string& ns, const std::string& name);  // the controller's part, under mu_
  std::vector<std::string> check(const nlohmann::json& obj);
  std::string version_of(const nlohmann::json& obj) const;

  FakeKubeApiOptions o_;
  TestPki pki_;
  CrdSchema crd_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t rv_ = 100;
  uint64_t compacted_ = 0;
  uint64_t watch_epoch_ = 0;  // drop_watches() ends the streams of older epochs  // events up to this rv are forgotten
  std::map<std::string, std::map<std::string, nlohmann::json>> objects_;  // ns -> name -> Sandbox
  std::map<std::string, std::map<std::string, nlohmann::json>> pods_;
  std::vector<Event> events_;
  std::vector<std::string> rejections_;
  std::map<std::string, int> requests_;
  std::atomic<int> unauthorized_{0};
  std::unique_ptr<Kubelet> kubelet_;  // last: stopped (and its containers removed) first
};

}  // namespace bulwark::testing
