#pragma once
// Where the Kubernetes API server is and how to prove who we are: in-cluster (the pod's service
// account) or a kubeconfig file, resolved the way kubectl does. Parsing is pure and unit-tested;
// only load_kube_config() and read_files() touch the filesystem.
#include <string>

namespace bulwark::k8s {

struct KubeConfig {
  std::string server;                   // https://host:port (a path prefix is kept)
  std::string ca_pem;                   // CA bundle the server's certificate must chain to
  std::string ca_file;                  // ... or a file holding it (read by read_files)
  bool insecure_skip_tls_verify = false;
  std::string token;                    // bearer token
  std::string token_file;               // ... or a file holding it
  std::string client_cert_pem, client_key_pem;  // client certificate authentication
  std::string client_cert_file, client_key_file;
  std::string namespace_name;           // the context's (or service account's) namespace, may be empty
  std::string source;                   // where this came from, for error messages
};

// A kubeconfig's text: the named context (empty = current-context), its cluster and user.
// Relative file paths are resolved against base_dir. Throws Error(kInvalidArgument, field
// "kubeconfig") saying what is missing.
KubeConfig parse_kubeconfig(const std::string& yaml_text, const std::string& base_dir, const std::string& context = {},
                            const std::string& source = "kubeconfig");

// The in-cluster configuration from a service account directory (token, ca.crt, namespace) and
// KUBERNETES_SERVICE_HOST/PORT. Reads the files.
KubeConfig in_cluster_config(const std::string& sa_dir, const std::string& host, const std::string& port);

// Reads every *_file into its *_pem/token field. Throws Error naming the file.
void read_files(KubeConfig& c);

// kubectl's order: --kubeconfig, else in-cluster when KUBERNETES_SERVICE_HOST is set and the
// service account token exists, else $KUBECONFIG (its first file), else ~/.kube/config.
KubeConfig load_kube_config(const std::string& kubeconfig_flag, const std::string& context = {});

// Standard base64 (padding optional, whitespace ignored). Throws Error(kInvalidArgument, field).
std::string base64_decode(const std::string& in, const std::string& field);

}  // namespace bulwark::k8s
