#include "services/driver-k8s/kube_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "shared/error.h"

namespace bulwark::k8s {

namespace {

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw Error(Code::kInvalidArgument, source + ": " + what, "kubeconfig");
}

std::string str(const YAML::Node& n, const char* key) {
  if (!n || !n.IsMap() || !n[key] || n[key].IsNull()) return {};
  return n[key].as<std::string>();
}

// The entry of a named list (clusters, users, contexts) whose name is `name`.
YAML::Node find_named(const YAML::Node& root, const char* list, const std::string& name, const std::string& source) {
  const YAML::Node l = root[list];
  if (l && l.IsSequence())
    for (const auto& e : l)
      if (str(e, "name") == name) return e;
  bad(source, std::string(list) + " has no entry named '" + name + "'");
}

std::string resolve(const std::string& path, const std::string& base_dir) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

std::string slurp(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Code::kFailedPrecondition, "cannot read " + what + " " + path + ": check the path and its permissions", "kubeconfig");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::string base64_decode(const std::string& in, const std::string& field) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  bool padding = false;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    int v = val(c);
    if (v < 0 || padding) throw Error(Code::kInvalidArgument, field + " is not valid base64", field);
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

KubeConfig parse_kubeconfig(const std::string& yaml_text, const std::string& base_dir, const std::string& context,
                            const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    bad(source, std::string("not valid YAML: ") + e.what());
  }
  if (!root || !root.IsMap()) bad(source, "not a kubeconfig (expected a mapping with clusters, users, contexts)");
  KubeConfig c;
  c.source = source;
  std::string ctx_name = context.empty() ? str(root, "current-context") : context;
  if (ctx_name.empty())
    bad(source, "no current-context: set one (`kubectl config use-context NAME`) or pass the context to use");
  const YAML::Node ctx = find_named(root, "contexts", ctx_name, source)["context"];
  if (!ctx || !ctx.IsMap()) bad(source, "context '" + ctx_name + "' has no context: section");
  c.namespace_name = str(ctx, "namespace");

  std::string cluster_name = str(ctx, "cluster");
  if (cluster_name.empty()) bad(source, "context '" + ctx_name + "' names no cluster");
  const YAML::Node cl = find_named(root, "clusters", cluster_name, source)["cluster"];
  c.server = str(cl, "server");
  if (c.server.empty()) bad(source, "cluster '" + cluster_name + "' has no server");
  if (std::string d = str(cl, "certificate-authority-data"); !d.empty())
    c.ca_pem = base64_decode(d, "certificate-authority-data");
  else
    c.ca_file = resolve(str(cl, "certificate-authority"), base_dir);
  if (cl && cl["insecure-skip-tls-verify"]) c.insecure_skip_tls_verify = cl["insecure-skip-tls-verify"].as<bool>();

  // A context without a user is legal (anonymous); a named user must exist.
  if (std::string user_name = str(ctx, "user"); !user_name.empty()) {
    const YAML::Node u = find_named(root, "users", user_name, source)["user"];
    if (u && u.IsMap()) {
      if (u["exec"] || u["auth-provider"])
        bad(source, "user '" + user_name +
                        "' authenticates with an exec/auth-provider plugin, which driver-k8s does not run: give it a "
                        "token (e.g. a service account's, `kubectl create token NAME`) or a client certificate");
      c.token = str(u, "token");
      c.token_file = resolve(str(u, "tokenFile"), base_dir);
      if (std::string d = str(u, "client-certificate-data"); !d.empty())
        c.client_cert_pem = base64_decode(d, "client-certificate-data");
      else
        c.client_cert_file = resolve(str(u, "client-certificate"), base_dir);
      if (std::string d = str(u, "client-key-data"); !d.empty())
        c.client_key_pem = base64_decode(d, "client-key-data");
      else
        c.client_key_file = resolve(str(u, "client-key"), base_dir);
      bool has_cert = !c.client_cert_pem.empty() || !c.client_cert_file.empty();
      bool has_key = !c.client_key_pem.empty() || !c.client_key_file.empty();
      if (has_cert != has_key)
        bad(source, "user '" + user_name + "' has a client certificate without its key (or a key without its certificate)");
    }
  }
  return c;
}

void read_files(KubeConfig& c) {
  if (c.ca_pem.empty() && !c.ca_file.empty()) c.ca_pem = slurp(c.ca_file, "certificate-authority");
  if (c.token.empty() && !c.token_file.empty()) c.token = trim(slurp(c.token_file, "token file"));
  if (c.client_cert_pem.empty() && !c.client_cert_file.empty()) c.client_cert_pem = slurp(c.client_cert_file, "client-certificate");
  if (c.client_key_pem.empty() && !c.client_key_file.empty()) c.client_key_pem = slurp(c.client_key_file, "client-key");
}

KubeConfig in_cluster_config(const std::string& sa_dir, const std::string& host, const std::string& port) {
  KubeConfig c;
  c.source = "in-cluster service account (" + sa_dir + ")";
  // An IPv6 service address needs brackets in a URL.
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  c.server = "https://" + h + ":" + (port.empty() ? "443" : port);
  c.token_file = sa_dir + "/token";
  c.ca_file = sa_dir + "/ca.crt";
  if (exists(sa_dir + "/namespace")) c.namespace_name = trim(slurp(sa_dir + "/namespace", "service account namespace"));
  read_files(c);
  return c;
}

KubeConfig load_kube_config(const std::string& kubeconfig_flag, const std::string& context) {
  auto from_file = [&](const std::string& path, const std::string& how) {
    auto slash = path.rfind('/');
    KubeConfig c = parse_kubeconfig(slurp(path, "kubeconfig"), slash == std::string::npos ? "." : path.substr(0, slash),
                                    context, how + " " + path);
    read_files(c);
    return c;
  };
  if (!kubeconfig_flag.empty()) return from_file(kubeconfig_flag, "--kubeconfig");
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const std::string sa = "/var/run/secrets/kubernetes.io/serviceaccount";
  if (host && *host && exists(sa + "/token")) {
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    return in_cluster_config(sa, host, port ? port : "");
  }
  if (const char* env = std::getenv("KUBECONFIG"); env && *env) {
    std::string first = env;
    first = first.substr(0, first.find(':'));
    return from_file(first, "$KUBECONFIG");
  }
  const char* home = std::getenv("HOME");
  std::string def = std::string(home ? home : "") + "/.kube/config";
  if (home && exists(def)) return from_file(def, "");
  throw Error(Code::kFailedPrecondition,
              "no Kubernetes credentials: run inside a pod with a service account, or pass --kubeconfig FILE (or set "
              "KUBECONFIG, or write ~/.kube/config)",
              "kubeconfig");
}

}  // namespace bulwark::k8s
