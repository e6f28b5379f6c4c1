#include "services/driver-k8s/kube_config.h"

#include <doctest/doctest.h>

#include <fstream>

#include "shared/error.h"
#include "shared/util.h"

using namespace bulwark;
using namespace bulwark::k8s;

namespace {
const char* kTwoContexts = R"(
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTg==
- name: prod-cluster
  cluster:
    server: https://prod.example.com
    certificate-authority: certs/ca.pem
    insecure-skip-tls-verify: true
users:
- name: dev-user
  user:
    token: abc.def
- name: prod-user
  user:
    client-certificate: /abs/client.crt
    client-key: keys/client.key
contexts:
- name: dev
  context: {cluster: dev-cluster, user: dev-user, namespace: agents}
- name: prod
  context: {cluster: prod-cluster, user: prod-user}
)";
}  // namespace

TEST_CASE("kubeconfig: the current context's cluster, user and namespace") {
  auto c = parse_kubeconfig(kTwoContexts, "/home/u/.kube");
  CHECK(c.server == "https://10.0.0.1:6443");
  CHECK(c.ca_pem == "-----BEGIN");
  CHECK(c.token == "abc.def");
  CHECK(c.namespace_name == "agents");
  CHECK_FALSE(c.insecure_skip_tls_verify);
  CHECK(c.client_cert_pem.empty());
}

TEST_CASE("kubeconfig: a named context; file paths resolved against the kubeconfig's directory") {
  auto c = parse_kubeconfig(kTwoContexts, "/home/u/.kube", "prod");
  CHECK(c.server == "https://prod.example.com");
  CHECK(c.ca_file == "/home/u/.kube/certs/ca.pem");
  CHECK(c.insecure_skip_tls_verify);
  CHECK(c.client_cert_file == "/abs/client.crt");
  CHECK(c.client_key_file == "/home/u/.kube/keys/client.key");
  CHECK(c.token.empty());
  CHECK(c.namespace_name.empty());
}

TEST_CASE("kubeconfig: inline client certificate data is decoded") {
  std::string y = R"(
current-context: c
clusters: [{name: k, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
)";
  auto c = parse_kubeconfig(y, ".");
  CHECK(c.client_cert_pem == "CERT");
  CHECK(c.client_key_pem == "KEY");
}

TEST_CASE("kubeconfig: errors say what is missing") {
  auto msg = [](const std::string& y, const std::string& ctx = {}) {
    try {
      parse_kubeconfig(y, ".", ctx);
    } catch (const Error& e) {
      CHECK(e.field() == "kubeconfig");
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(msg("clusters: []\n").find("no current-context") != std::string::npos);
  CHECK(msg(kTwoContexts, "staging").find("contexts has no entry named 'staging'") != std::string::npos);
  CHECK(msg("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {}}]\n")
            .find("has no server") != std::string::npos);
  CHECK(msg("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
            "clusters: [{name: k, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\n")
            .find("exec/auth-provider") != std::string::npos);
  CHECK(msg("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
            "clusters: [{name: k, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {client-certificate: a.crt}}]\n")
            .find("without its key") != std::string::npos);
  CHECK(msg("[not, a, map").find("not valid YAML") != std::string::npos);
}

TEST_CASE("base64: padding optional, whitespace ignored, garbage refused") {
  CHECK(base64_decode("aGVsbG8=", "f") == "hello");
  CHECK(base64_decode("aGVs\nbG8", "f") == "hello");
  CHECK(base64_decode("", "f").empty());
  CHECK_THROWS_AS(base64_decode("a$b", "f"), Error);
}

TEST_CASE("in-cluster: the service account's token, CA and namespace; the service host and port") {
  TempDir d("k8s-sa");
  std::ofstream(d.file("token")) << "sa-token\n";
  std::ofstream(d.file("ca.crt")) << "PEM";
  std::ofstream(d.file("namespace")) << "sandboxes\n";
  auto c = in_cluster_config(d.path(), "10.96.0.1", "443");
  CHECK(c.server == "https://10.96.0.1:443");
  CHECK(c.token == "sa-token");
  CHECK(c.ca_pem == "PEM");
  CHECK(c.namespace_name == "sandboxes");
  CHECK(in_cluster_config(d.path(), "fd00::1", "6443").server == "https://[fd00::1]:6443");
}

TEST_CASE("--kubeconfig wins; relative files are read") {
  TempDir d("k8s-kc");
  std::ofstream(d.file("ca.pem")) << "CA";
  std::ofstream(d.file("tok")) << "from-file\n";
  std::ofstream(d.file("config")) << "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
                                     "clusters: [{name: k, cluster: {server: 'https://h:6443', certificate-authority: ca.pem}}]\n"
                                     "users: [{name: u, user: {tokenFile: tok}}]\n";
  auto c = load_kube_config(d.file("config"));
  CHECK(c.ca_pem == "CA");
  CHECK(c.token == "from-file");
  CHECK(c.source.find("--kubeconfig") != std::string::npos);
  CHECK_THROWS_AS(load_kube_config(d.file("missing")), Error);
}
