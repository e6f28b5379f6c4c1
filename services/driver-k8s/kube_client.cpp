#include "services/driver-k8s/kube_client.h"

#include <httplib.h>
#include <openssl/pem.h>

#include <algorithm>

#include "shared/error.h"

namespace bulwark::k8s {

namespace {

std::string query(const std::string& s) { return httplib::detail::encode_query_param(s); }

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::unique_ptr<BIO, BioFree> mem_bio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate of a PEM bundle in a fresh store (httplib's SSLClient takes ownership).
X509_STORE* store_from_pem(const std::string& pem) {
  X509_STORE* store = X509_STORE_new();
  auto bio = mem_bio(pem);
  int added = 0;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, x) == 1) ++added;
    X509_free(x);
  }
  if (added == 0) {
    X509_STORE_free(store);
    throw Error(Code::kInvalidArgument, "the cluster's certificate-authority holds no PEM certificate", "kubeconfig");
  }
  return store;
}

std::string status_message(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  return body.substr(0, 300);
}

}  // namespace

ServerUrl parse_server_url(const std::string& url) {
  ServerUrl u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    u.tls = false;
    u.port = 80;
    rest = url.substr(7);
  } else {
    throw Error(Code::kInvalidArgument, "API server '" + url + "' is not an https:// (or http://) URL", "api_server");
  }
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) u.prefix = rest.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  std::string port;
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) throw Error(Code::kInvalidArgument, "API server '" + url + "': unclosed '['", "api_server");
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') port = hostport.substr(close + 2);
  } else {
    auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) port = hostport.substr(colon + 1);
  }
  if (u.host.empty()) throw Error(Code::kInvalidArgument, "API server '" + url + "' has no host", "api_server");
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit))
      throw Error(Code::kInvalidArgument, "API server '" + url + "' has a bad port", "api_server");
    u.port = std::stoi(port);
  }
  return u;
}

Error status_error(const std::string& what, int http_status, const std::string& body) {
  std::string msg = "Kubernetes " + what + ": " + status_message(body);
  switch (http_status) {
    case 401:
      return Error(Code::kUnauthenticated,
                   msg + " (HTTP 401: the API server refused the credentials; check the token or client certificate in "
                         "the kubeconfig, e.g. `kubectl create token SERVICEACCOUNT`)",
                   "kubeconfig");
    case 403:
      return Error(Code::kPermissionDenied,
                   msg + " (HTTP 403: grant the driver's identity get/list/watch/create/patch/delete on "
                         "sandboxes.agents.x-k8s.io and get on pods in its namespace)");
    case 404: return Error(Code::kNotFound, msg);
    case 409: return Error(Code::kAlreadyExists, msg);
    case 400:
    case 422: return Error(Code::kInvalidArgument, msg);
    case 410: return Error(Code::kFailedPrecondition, msg);
    default:
      if (http_status >= 500) return Error(Code::kUnavailable, msg + " (HTTP " + std::to_string(http_status) + ")");
      return Error(Code::kInternal, msg + " (HTTP " + std::to_string(http_status) + ")");
  }
}

std::string choose_version(const nlohmann::json& api_group, const std::vector<std::string>& supported) {
  std::vector<std::string> served;
  if (api_group.is_object() && api_group.contains("versions") && api_group["versions"].is_array())
    for (const auto& v : api_group["versions"])
      if (v.is_object() && v.contains("version") && v["version"].is_string()) served.push_back(v["version"]);
  for (const auto& want : supported)
    if (std::find(served.begin(), served.end(), want) != served.end()) return want;
  return {};
}

KubeClient::KubeClient(KubeConfig config, std::string namespace_name)
    : cfg_(std::move(config)), url_(parse_server_url(cfg_.server)), ns_(std::move(namespace_name)) {
  if (ns_.empty()) ns_ = cfg_.namespace_name.empty() ? "default" : cfg_.namespace_name;
  if (url_.tls && !cfg_.ca_pem.empty()) X509_STORE_free(store_from_pem(cfg_.ca_pem));  // fail now, not per call
  if (!cfg_.client_cert_pem.empty()) {
    auto b = mem_bio(cfg_.client_cert_pem);
    client_cert_.reset(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    auto k = mem_bio(cfg_.client_key_pem);
    client_key_.reset(PEM_read_bio_PrivateKey(k.get(), nullptr, nullptr, nullptr));
    if (!client_cert_ || !client_key_)
      throw Error(Code::kInvalidArgument, cfg_.source + ": the client certificate or key is not PEM", "kubeconfig");
  }
}

KubeClient::~KubeClient() { cancel_watches(); }

std::string KubeClient::describe() const { return "the API server at " + cfg_.server + " (" + cfg_.source + ")"; }

std::unique_ptr<httplib::ClientImpl> KubeClient::connect(int read_timeout_s) const {
  std::unique_ptr<httplib::ClientImpl> c;
  if (url_.tls) {
    auto ssl = std::make_unique<httplib::SSLClient>(url_.host, url_.port, client_cert_.get(), client_key_.get());
    if (!cfg_.ca_pem.empty()) ssl->set_ca_cert_store(store_from_pem(cfg_.ca_pem));
    ssl->enable_server_certificate_verification(!cfg_.insecure_skip_tls_verify);
    c = std::move(ssl);
  } else {
    c = std::make_unique<httplib::ClientImpl>(url_.host, url_.port);
  }
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(5);
  c->set_read_timeout(read_timeout_s);
  c->set_write_timeout(30);
  httplib::Headers h = {{"Accept", "application/json"}, {"User-Agent", "bulwark-driver-k8s"}};
  if (!cfg_.token.empty()) h.emplace("Authorization", "Bearer " + cfg_.token);
  c->set_default_headers(h);
  return c;
}

std::string KubeClient::sandboxes_path(const std::string& version) const {
  return url_.prefix + "/apis/" + kGroup + "/" + version + "/namespaces/" + ns_ + "/sandboxes";
}

namespace {
// A failed connection (no reply at all): TLS and reachability problems, said plainly.
[[noreturn]] void unreachable(const std::string& who, const std::string& what, httplib::Error e) {
  std::string hint = e == httplib::Error::SSLServerVerification
                         ? "the server's certificate does not verify against the cluster's certificate-authority (or its "
                           "name does not match the server's host)"
                         : "is the API server running and reachable from here?";
  throw Error(Code::kUnavailable, "Kubernetes " + what + ": cannot reach " + who + ": " + httplib::to_string(e) + "; " + hint);
}
}  // namespace

std::string KubeClient::discover_version() {
  auto c = connect(30);
  auto r = c->Get(url_.prefix + "/apis/" + kGroup);
  if (!r) unreachable(describe(), "discovery", r.error());
  if (r->status == 404)
    throw Error(Code::kFailedPrecondition,
                std::string("the cluster at ") + cfg_.server + " serves no " + kGroup +
                    " API: install the agent-sandbox CRDs and controller (kubernetes-sigs/agent-sandbox)");
  if (r->status != 200) throw status_error("discovery of " + std::string(kGroup), r->status, r->body);
  auto v = choose_version(nlohmann::json::parse(r->body, nullptr, false), {"v1beta1", "v1alpha1"});
  if (v.empty())
    throw Error(Code::kFailedPrecondition, std::string("the cluster's ") + kGroup +
                                               " API serves neither v1beta1 nor v1alpha1: upgrade the agent-sandbox CRDs");
  return v;
}

nlohmann::json KubeClient::create(const std::string& version, const nlohmann::json& body) {
  auto c = connect(30);
  auto r = c->Post(sandboxes_path(version), body.dump(), "application/json");
  if (!r) unreachable(describe(), "create Sandbox", r.error());
  if (r->status != 201 && r->status != 200 && r->status != 202)
    throw status_error("create Sandbox " + body.value("metadata", nlohmann::json::object()).value("name", ""), r->status, r->body);
  return nlohmann::json::parse(r->body);
}

std::optional<nlohmann::json> KubeClient::get(const std::string& version, const std::string& name) {
  auto c = connect(30);
  auto r = c->Get(sandboxes_path(version) + "/" + name);
  if (!r) unreachable(describe(), "get Sandbox", r.error());
  if (r->status == 404) return std::nullopt;
  if (r->status != 200) throw status_error("get Sandbox " + name, r->status, r->body);
  return nlohmann::json::parse(r->body);
}

nlohmann::json KubeClient::list(const std::string& version, const std::string& label_selector) {
  auto c = connect(30);
  auto r = c->Get(sandboxes_path(version) + "?labelSelector=" + query(label_selector));
  if (!r) unreachable(describe(), "list Sandboxes", r.error());
  if (r->status != 200) throw status_error("list Sandboxes", r->status, r->body);
  return nlohmann::json::parse(r->body);
}

nlohmann::json KubeClient::patch(const std::string& version, const std::string& name, const nlohmann::json& merge_patch) {
  auto c = connect(30);
  auto r = c->Patch(sandboxes_path(version) + "/" + name, merge_patch.dump(), "application/merge-patch+json");
  if (!r) unreachable(describe(), "patch Sandbox", r.error());
  if (r->status != 200) throw status_error("patch Sandbox " + name, r->status, r->body);
  return nlohmann::json::parse(r->body);
}

bool KubeClient::remove(const std::string& version, const std::string& name) {
  auto c = connect(30);
  nlohmann::json opts = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Foreground"}};
  auto r = c->Delete(sandboxes_path(version) + "/" + name, opts.dump(), "application/json");
  if (!r) unreachable(describe(), "delete Sandbox", r.error());
  if (r->status == 404) return false;
  if (r->status != 200 && r->status != 202) throw status_error("delete Sandbox " + name, r->status, r->body);
  return true;
}

std::optional<nlohmann::json> KubeClient::get_pod(const std::string& name) {
  auto c = connect(30);
  auto r = c->Get(url_.prefix + "/api/v1/namespaces/" + ns_ + "/pods/" + name);
  if (!r) unreachable(describe(), "get Pod", r.error());
  if (r->status == 404) return std::nullopt;
  if (r->status != 200) throw status_error("get Pod " + name, r->status, r->body);
  return nlohmann::json::parse(r->body);
}

void KubeClient::watch(const std::string& version, const std::string& label_selector, const std::string& resource_version,
                       int timeout_s, const std::function<bool(const nlohmann::json&)>& on_event) {
  // The server ends the stream after timeoutSeconds; the read timeout only catches a dead peer.
  auto c = connect(timeout_s + 15);
  {
    std::lock_guard lock(watch_mu_);
    if (cancelled_) return;
    watching_.push_back(c.get());
  }
  std::string path = sandboxes_path(version) + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=" +
                     std::to_string(timeout_s) + "&labelSelector=" + query(label_selector);
  if (!resource_version.empty()) path += "&resourceVersion=" + query(resource_version);
  int status = 0;
  std::string buf, error_body;
  bool stopped_by_handler = false;
  auto r = c->Get(
      path, httplib::Headers{},
      [&](const httplib::Response& res) {
        status = res.status;
        return true;
      },
      [&](const char* data, size_t n) {
        if (status != 200) {
          error_body.append(data, n);
          return true;
        }
        buf.append(data, n);
        size_t nl;
        while ((nl = buf.find('\n')) != std::string::npos) {
          std::string line = buf.substr(0, nl);
          buf.erase(0, nl + 1);
          if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
          auto ev = nlohmann::json::parse(line, nullptr, false);
          if (ev.is_discarded() || !ev.is_object()) continue;
          if (!on_event(ev)) {
            stopped_by_handler = true;
            return false;
          }
        }
        return true;
      });
  bool cancelled;
  {
    std::lock_guard lock(watch_mu_);
    watching_.erase(std::remove(watching_.begin(), watching_.end(), c.get()), watching_.end());
    cancelled = cancelled_;
  }
  if (stopped_by_handler || cancelled) return;
  if (!r) {
    // The stream ending without a clean close is how a server (or proxy) times a watch out.
    if (r.error() == httplib::Error::Read) return;
    unreachable(describe(), "watch Sandboxes", r.error());
  }
  if (status != 200) throw status_error("watch Sandboxes", status, error_body.empty() ? r->body : error_body);
}

void KubeClient::cancel_watches() {
  std::lock_guard lock(watch_mu_);
  cancelled_ = true;
  for (auto* c : watching_) c->stop();
}

}  // namespace bulwark::k8s
