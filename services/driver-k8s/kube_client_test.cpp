#include "services/driver-k8s/kube_client.h"

#include <doctest/doctest.h>

using namespace bulwark;
using namespace bulwark::k8s;

TEST_CASE("server URLs: scheme, host, port, prefix") {
  auto u = parse_server_url("https://10.0.0.1:6443");
  CHECK(u.tls);
  CHECK(u.host == "10.0.0.1");
  CHECK(u.port == 6443);
  CHECK(u.prefix.empty());
  u = parse_server_url("https://k8s.example.com/proxy/");
  CHECK(u.port == 443);
  CHECK(u.prefix == "/proxy");
  u = parse_server_url("http://127.0.0.1:8001");
  CHECK_FALSE(u.tls);
  CHECK(u.port == 8001);
  u = parse_server_url("https://[fd00::1]:6443");
  CHECK(u.host == "fd00::1");
  CHECK(u.port == 6443);
  CHECK_THROWS_AS(parse_server_url("10.0.0.1:6443"), Error);
  CHECK_THROWS_AS(parse_server_url("https://h:port"), Error);
}

TEST_CASE("discovery: v1beta1 preferred, v1alpha1 accepted, neither is empty") {
  auto g = nlohmann::json::parse(R"({"kind":"APIGroup","name":"agents.x-k8s.io",
    "versions":[{"groupVersion":"agents.x-k8s.io/v1alpha1","version":"v1alpha1"},{"groupVersion":"agents.x-k8s.io/v1beta1","version":"v1beta1"}]})");
  CHECK(choose_version(g, {"v1beta1", "v1alpha1"}) == "v1beta1");
  g["versions"].erase(1);
  CHECK(choose_version(g, {"v1beta1", "v1alpha1"}) == "v1alpha1");
  g["versions"] = nlohmann::json::array({{{"version", "v2"}}});
  CHECK(choose_version(g, {"v1beta1", "v1alpha1"}).empty());
  CHECK(choose_version(nlohmann::json(), {"v1beta1"}).empty());
}

TEST_CASE("Status bodies become errors with the server's message and a code") {
  std::string body = R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"sandboxes.agents.x-k8s.io \"bw-1\" already exists","reason":"AlreadyExists","code":409})";
  auto e = status_error("create Sandbox bw-1", 409, body);
  CHECK(e.code() == Code::kAlreadyExists);
  CHECK(std::string(e.what()).find("\"bw-1\" already exists") != std::string::npos);
  CHECK(status_error("x", 401, R"({"message":"Unauthorized"})").code() == Code::kUnauthenticated);
  CHECK(std::string(status_error("x", 401, R"({"message":"Unauthorized"})").what()).find("token") != std::string::npos);
  CHECK(status_error("x", 403, "{}").code() == Code::kPermissionDenied);
  CHECK(status_error("x", 404, "{}").code() == Code::kNotFound);
  CHECK(status_error("x", 422, "{}").code() == Code::kInvalidArgument);
  CHECK(status_error("x", 503, "not json").code() == Code::kUnavailable);
  CHECK(std::string(status_error("x", 500, "not json").what()).find("not json") != std::string::npos);
}

TEST_CASE("a client certificate that is not PEM is refused at construction") {
  KubeConfig c;
  c.server = "https://127.0.0.1:1";
  c.client_cert_pem = "garbage";
  c.client_key_pem = "garbage";
  CHECK_THROWS_AS(KubeClient(c, "ns"), Error);
  KubeConfig ok;
  ok.server = "https://127.0.0.1:1";
  CHECK(KubeClient(ok, "").namespace_name() == "default");
}

// The client against the fake API server (HTTPS with its own CA, token auth, CRD validation).
#include "services/driver-k8s/sandbox_resource.h"
#include "shared/util.h"
#include "tests/support/fake_kube_api.h"

namespace {
KubeConfig fake_config(const testing::FakeKubeApi& api, const std::string& token = "bulwark-test-token") {
  KubeConfig c;
  c.server = api.url();
  c.ca_file = api.ca_file();
  c.token = token;
  c.source = "test";
  read_files(c);
  return c;
}
nlohmann::json body(const std::string& version, const std::string& id) {
  ResourceConfig rc;
  rc.driver_id = "k8s-test";
  rc.namespace_name = "agents";
  rc.nats_url = "nats://nats:4222";
  rc.supervisor_image = "supervisor:1";
  v1::SandboxSpec s;
  s.set_image("busybox");
  s.add_command("true");
  return sandbox_body(version, id, s, rc);
}
}  // namespace

TEST_CASE("client: create, get, list by label, merge-patch, delete against the fake API server") {
  testing::FakeKubeApi api;
  KubeClient kc(fake_config(api), "agents");
  REQUIRE(kc.discover_version() == "v1beta1");
  auto created = kc.create("v1beta1", body("v1beta1", "s1"));
  CHECK(created["metadata"]["name"] == "bw-s1");
  CHECK_FALSE(created["metadata"].value("uid", "").empty());
  auto got = kc.get("v1beta1", "bw-s1");
  REQUIRE(got);
  CHECK((*got)["status"]["conditions"][0]["status"] == "True");  // the fake controller made it ready
  CHECK(kc.list("v1beta1", label_selector("k8s-test"))["items"].size() == 1);
  CHECK(kc.list("v1beta1", label_selector("someone-else"))["items"].empty());
  try {
    kc.create("v1beta1", body("v1beta1", "s1"));
    FAIL("a second create must fail");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kAlreadyExists);
    CHECK(std::string(e.what()).find("already exists") != std::string::npos);
  }
  auto patched = kc.patch("v1beta1", "bw-s1", run_patch("v1beta1", false));
  CHECK(patched["spec"]["operatingMode"] == "Suspended");
  CHECK(patched["status"]["conditions"][0]["status"] == "False");
  CHECK_FALSE(kc.get_pod("bw-s1"));  // the controller removed the pod
  CHECK(kc.remove("v1beta1", "bw-s1"));
  CHECK_FALSE(kc.remove("v1beta1", "bw-s1"));
  CHECK_FALSE(kc.get("v1beta1", "bw-s1"));
  CHECK_THROWS_AS(kc.patch("v1beta1", "bw-s1", run_patch("v1beta1", true)), Error);
  CHECK(api.rejections().empty());
}

TEST_CASE("client: a body the schema rejects comes back as invalid_argument with the path") {
  testing::FakeKubeApi api;
  KubeClient kc(fake_config(api), "agents");
  auto b = body("v1beta1", "s2");
  b["spec"]["podTemplate"]["spec"]["containers"][0]["bogusField"] = 1;
  try {
    kc.create("v1beta1", b);
    FAIL("the fake must reject an unknown field");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    CHECK(std::string(e.what()).find("spec.podTemplate.spec.containers[0].bogusField: unknown field") != std::string::npos);
  }
  // A v1beta1 body sent to v1alpha1 is refused too (apiVersion and operatingMode).
  CHECK_THROWS_AS(kc.create("v1alpha1", body("v1beta1", "s3")), Error);
  CHECK(api.rejections().size() == 1);
}

TEST_CASE("client: discovery falls back to v1alpha1, and says to install the CRD when there is none") {
  testing::FakeKubeApi alpha({.versions = {"v1alpha1"}});
  KubeClient kc(fake_config(alpha), "agents");
  CHECK(kc.discover_version() == "v1alpha1");
  testing::FakeKubeApi none({.versions = {}});
  KubeClient kn(fake_config(none), "agents");
  try {
    kn.discover_version();
    FAIL("no group must fail");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kFailedPrecondition);
    CHECK(std::string(e.what()).find("install the agent-sandbox CRDs") != std::string::npos);
  }
}

TEST_CASE("client: a bad token is unauthenticated, a wrong CA is refused before any request") {
  testing::FakeKubeApi api;
  KubeClient bad(fake_config(api, "wrong"), "agents");
  try {
    bad.discover_version();
    FAIL("a bad token must fail");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnauthenticated);
    CHECK(std::string(e.what()).find("Unauthorized") != std::string::npos);
  }
  CHECK(api.unauthorized() == 1);
  testing::TestPki other("another CA");
  auto c = fake_config(api);
  c.ca_pem.clear();
  c.ca_file = other.ca_file;
  read_files(c);
  KubeClient untrusted(c, "agents");
  try {
    untrusted.discover_version();
    FAIL("a server whose certificate does not chain to the CA must be refused");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnavailable);
    CHECK(std::string(e.what()).find("certificate") != std::string::npos);
  }
  CHECK(api.requests("GET") == 1);  // only the bad-token one reached the server
}

TEST_CASE("client: watch streams events from a resourceVersion; an expired one gets ERROR 410") {
  testing::FakeKubeApi api;
  KubeClient kc(fake_config(api), "agents");
  auto l = kc.list("v1beta1", label_selector("k8s-test"));
  std::string rv = l["metadata"]["resourceVersion"];
  kc.create("v1beta1", body("v1beta1", "w1"));
  kc.remove("v1beta1", "bw-w1");
  std::vector<std::string> types;
  kc.watch("v1beta1", label_selector("k8s-test"), rv, 1, [&](const nlohmann::json& ev) {
    types.push_back(ev["type"]);
    return types.size() < 3;
  });
  CHECK(types == std::vector<std::string>{"ADDED", "MODIFIED", "DELETED"});

  // The stream ends by itself after timeoutSeconds.
  auto start = std::chrono::steady_clock::now();
  kc.watch("v1beta1", label_selector("k8s-test"), "", 1, [](const nlohmann::json&) { return true; });
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

  kc.create("v1beta1", body("v1beta1", "w2"));
  api.compact();
  types.clear();
  std::string code;
  kc.watch("v1beta1", label_selector("k8s-test"), rv, 5, [&](const nlohmann::json& ev) {
    types.push_back(ev["type"]);
    if (ev["type"] == "ERROR") code = std::to_string(ev["object"].value("code", 0));
    return true;
  });
  CHECK(types == std::vector<std::string>{"ERROR"});
  CHECK(code == "410");
}

TEST_CASE("client: a client certificate authenticates without a token; one from another CA is refused") {
  testing::FakeKubeApi api;
  auto cert = api.issue_client_cert("bulwark-driver");
  auto c = fake_config(api, "");
  c.client_cert_pem = cert.cert_pem;
  c.client_key_pem = cert.key_pem;
  KubeClient kc(c, "agents");
  CHECK(kc.discover_version() == "v1beta1");
  CHECK(kc.list("v1beta1", label_selector("x"))["items"].empty());
  CHECK(api.unauthorized() == 0);

  testing::FakeKubeApi other;
  auto foreign = other.issue_client_cert("intruder");
  c.client_cert_pem = foreign.cert_pem;
  c.client_key_pem = foreign.key_pem;
  KubeClient bad(c, "agents");
  CHECK_THROWS_AS(bad.discover_version(), Error);
  CHECK(api.requests("GET") == 2);  // the foreign certificate never got a request through

  // No credential at all: 401.
  KubeClient anonymous(fake_config(api, ""), "agents");
  try {
    anonymous.discover_version();
    FAIL("an anonymous request must be refused");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnauthenticated);
  }
}
