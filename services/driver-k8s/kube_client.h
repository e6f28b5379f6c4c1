#pragma once
// A small client for the Kubernetes API, limited to what driver-k8s needs: discovery of the
// agents.x-k8s.io versions, namespaced Sandbox create/get/list/merge-patch/delete/watch, and a pod
// GET for exit codes. HTTPS verified against the cluster's CA, a bearer token or a client
// certificate; a fresh connection per call so calls from several threads never share one. Every
// failure is a bulwark::Error carrying the API server's own Status message.
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "services/driver-k8s/kube_config.h"
#include "shared/error.h"

namespace httplib {
class ClientImpl;
}

namespace bulwark::k8s {

inline constexpr const char* kGroup = "agents.x-k8s.io";

// "https://host:port/prefix" split up. Throws Error(kInvalidArgument) for anything else.
struct ServerUrl {
  bool tls = true;
  std::string host;
  int port = 443;
  std::string prefix;  // "" or "/something", no trailing '/'
};
ServerUrl parse_server_url(const std::string& url);

// The k8s Status body of a failed call -> Error: 401 unauthenticated, 403 permission denied, 404
// not found, 409 already exists, 400/422 invalid argument, 410 failed precondition (expired), 5xx
// unavailable. `what` names the call.
Error status_error(const std::string& what, int http_status, const std::string& body);

// The preferred served version of agents.x-k8s.io from a discovery (APIGroup) body among
// `supported` (best first); "" when none is served.
std::string choose_version(const nlohmann::json& api_group, const std::vector<std::string>& supported);

class KubeClient {
 public:
  KubeClient(KubeConfig config, std::string namespace_name);
  ~KubeClient();
  const std::string& namespace_name() const { return ns_; }
  const std::string& server() const { return cfg_.server; }

  // GET /apis/agents.x-k8s.io: "v1beta1" when served, else "v1alpha1". Throws Error
  // (kFailedPrecondition) saying to install the CRD when neither is.
  std::string discover_version();

  nlohmann::json create(const std::string& version, const nlohmann::json& body);
  std::optional<nlohmann::json> get(const std::string& version, const std::string& name);
  nlohmann::json list(const std::string& version, const std::string& label_selector);  // a SandboxList
  // application/merge-patch+json. Throws kNotFound when the object is gone.
  nlohmann::json patch(const std::string& version, const std::string& name, const nlohmann::json& merge_patch);
  // False when it did not exist. Foreground propagation: the pod and claims go with it.
  bool remove(const std::string& version, const std::string& name);
  std::optional<nlohmann::json> get_pod(const std::string& name);

  // Streams `?watch=1&resourceVersion=rv` events (one JSON object per line) to on_event until the
  // server ends the stream (after timeout_s), on_event returns false, or cancel_watches() is
  // called. Throws Error on an HTTP failure; a 410 "expired" arrives as an ERROR event.
  void watch(const std::string& version, const std::string& label_selector, const std::string& resource_version,
             int timeout_s, const std::function<bool(const nlohmann::json&)>& on_event);
  // Ends every running watch now (shutdown).
  void cancel_watches();

 private:
  std::unique_ptr<httplib::ClientImpl> connect(int read_timeout_s) const;
  std::string sandboxes_path(const std::string& version) const;
  std::string describe() const;

  KubeConfig cfg_;
  ServerUrl url_;
  std::string ns_;
  std::unique_ptr<X509, void (*)(X509*)> client_cert_{nullptr, X509_free};
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> client_key_{nullptr, EVP_PKEY_free};
  std::mutex watch_mu_;
  std::vector<httplib::ClientImpl*> watching_;
  bool cancelled_ = false;
};

}  // namespace bulwark::k8s
