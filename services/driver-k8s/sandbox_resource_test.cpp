#include "services/driver-k8s/sandbox_resource.h"

#include <doctest/doctest.h>

#include "shared/error.h"
#include "tests/support/fake_kube_api.h"

using namespace bulwark;
using namespace bulwark::k8s;

namespace {
ResourceConfig config() {
  ResourceConfig c;
  c.driver_id = "kubernetes-agents";
  c.namespace_name = "agents";
  c.nats_url = "nats://nats.bulwark.svc:4222";
  c.supervisor_image = "registry.example/bulwark/supervisor:1";
  return c;
}
v1::SandboxSpec spec() {
  v1::SandboxSpec s;
  s.set_name("hello");
  s.set_image("busybox:1.36");
  s.add_command("sh");
  s.add_command("-c");
  s.add_command("echo hi");
  (*s.mutable_env())["B"] = "2";
  (*s.mutable_env())["A"] = "1";
  (*s.mutable_env())["BULWARK_NATS_URL"] = "nats://evil:4222";
  (*s.mutable_labels())["team"] = "ml";
  s.set_policy("version: 1\n");
  return s;
}
const nlohmann::json& agent(const nlohmann::json& body) { return body["spec"]["podTemplate"]["spec"]["containers"][0]; }
const testing::CrdSchema& crd() {
  static testing::CrdSchema s = testing::CrdSchema::load(testing::sandbox_crd_path());
  return s;
}
}  // namespace

TEST_CASE("names and selectors") {
  CHECK(resource_name("0123abcd4567ef89") == "bw-0123abcd4567ef89");
  CHECK(resource_name("Some_ID") == "bw-some-id");
  CHECK_THROWS_AS(resource_name("a.b"), Error);
  CHECK(label_selector("kubernetes-agents") == "io.bulwark.driver_id=kubernetes-agents,io.bulwark.managed=true");
  CHECK(cpu_quantity(0.5) == "500m");
  CHECK(cpu_quantity(2) == "2");
  CHECK(cpu_quantity(1.25) == "1250m");
  CHECK(is_quantity("10Gi"));
  CHECK(is_quantity("500m"));
  CHECK(is_quantity("1e3"));
  CHECK_FALSE(is_quantity("10GB"));
  CHECK_FALSE(is_quantity("ten"));
}

TEST_CASE("the body: ownership labels, the supervisor first, env last, capabilities, seccomp") {
  auto b = sandbox_body("v1beta1", "0123abcd4567ef89", spec(), config());
  CHECK(b["apiVersion"] == "agents.x-k8s.io/v1beta1");
  CHECK(b["kind"] == "Sandbox");
  CHECK(b["metadata"]["name"] == "bw-0123abcd4567ef89");
  CHECK(b["metadata"]["namespace"] == "agents");
  auto labels = b["metadata"]["labels"];
  CHECK(labels["io.bulwark.driver_id"] == "kubernetes-agents");
  CHECK(labels["io.bulwark.managed"] == "true");
  CHECK(labels["io.bulwark.sandbox_id"] == "0123abcd4567ef89");
  CHECK(labels["io.bulwark.name"] == "hello");
  CHECK(labels["io.bulwark.label.team"] == "ml");
  CHECK(b["spec"]["podTemplate"]["metadata"]["labels"] == labels);
  CHECK(b["spec"]["operatingMode"] == "Running");
  CHECK_FALSE(b["spec"].contains("replicas"));

  const auto& a = agent(b);
  CHECK(a["image"] == "busybox:1.36");
  CHECK(a["command"] == nlohmann::json({"/.bulwark/lib/ld.so", "--library-path", "/.bulwark/lib", "/.bulwark/bin/bulwark-supervisor"}));
  CHECK(a["args"] == nlohmann::json({"--", "sh", "-c", "echo hi"}));
  // The user's env sorted, then the supervisor's, which a user cannot override.
  nlohmann::json names = nlohmann::json::array();
  for (const auto& e : a["env"]) names.push_back(e["name"]);
  CHECK(names == nlohmann::json({"A", "B", "BULWARK_SANDBOX_ID", "BULWARK_NATS_URL", "BULWARK_POLICY_YAML"}));
  CHECK(a["env"][3]["value"] == "nats://nats.bulwark.svc:4222");
  CHECK(a["securityContext"]["capabilities"]["drop"] == nlohmann::json({"ALL"}));
  CHECK(a["securityContext"]["capabilities"]["add"].size() == 9);
  CHECK(a["securityContext"]["seccompProfile"]["type"] == "Unconfined");
  CHECK(a["volumeMounts"][0]["mountPath"] == "/.bulwark");
  CHECK(a["volumeMounts"][0]["readOnly"] == true);
  CHECK_FALSE(a.contains("resources"));

  const auto& pod = b["spec"]["podTemplate"]["spec"];
  CHECK(pod["restartPolicy"] == "Never");
  CHECK(pod["automountServiceAccountToken"] == false);
  CHECK(pod["initContainers"][0]["image"] == "registry.example/bulwark/supervisor:1");
  CHECK(pod["initContainers"][0]["command"] == nlohmann::json({"cp", "-a", "/.bulwark/.", "/bulwark-out/"}));
  CHECK(pod["volumes"][0]["emptyDir"].is_object());
  CHECK_FALSE(b["spec"].contains("volumeClaimTemplates"));
  CHECK(crd().validate("v1beta1", b).empty());
}

TEST_CASE("providers make the supervisor require their environment") {
  auto s = spec();
  s.add_providers("github");
  CHECK(agent(sandbox_body("v1beta1", "x1", s, config()))["args"][0] == "--provider-env");
}

TEST_CASE("keep_after_exit tells the supervisor to keep the sandbox after the agent ends") {
  auto s = spec();
  CHECK(agent(sandbox_body("v1beta1", "x1", s, config()))["args"][0] == "--");
  s.set_keep_after_exit(true);
  CHECK(agent(sandbox_body("v1beta1", "x1", s, config()))["args"][0] == "--keep-after-exit=true");
}

TEST_CASE("limits: cpu, memory and nvidia.com/gpu; valid against the CRD in both versions") {
  auto s = spec();
  s.mutable_resources()->set_cpus(1.5);
  s.mutable_resources()->set_memory_bytes(512ull << 20);
  s.mutable_resources()->set_gpus(2);
  for (const char* v : {"v1beta1", "v1alpha1"}) {
    auto b = sandbox_body(v, "x1", s, config());
    CHECK(agent(b)["resources"]["limits"] == nlohmann::json({{"cpu", "1500m"}, {"memory", "536870912"}, {"nvidia.com/gpu", "2"}}));
    auto errs = crd().validate(v, b);
    CHECK_MESSAGE(errs.empty(), v, ": ", errs.empty() ? "" : errs[0]);
  }
}

TEST_CASE("v1alpha1 runs by replicas; stop/start patches per version") {
  auto b = sandbox_body("v1alpha1", "x1", spec(), config());
  CHECK(b["spec"]["replicas"] == 1);
  CHECK_FALSE(b["spec"].contains("operatingMode"));
  CHECK(run_patch("v1alpha1", false) == nlohmann::json::parse(R"({"spec":{"replicas":0}})"));
  CHECK(run_patch("v1beta1", false) == nlohmann::json::parse(R"({"spec":{"operatingMode":"Suspended"}})"));
  CHECK(run_patch("v1beta1", true) == nlohmann::json::parse(R"({"spec":{"operatingMode":"Running"}})"));
}

TEST_CASE("a persistent /sandbox: a volumeClaimTemplate and its mount") {
  auto c = config();
  c.storage_size = "10Gi";
  c.storage_class = "fast";
  auto b = sandbox_body("v1beta1", "x1", spec(), c);
  const auto& t = b["spec"]["volumeClaimTemplates"][0];
  CHECK(t["metadata"]["name"] == "sandbox-data");
  CHECK(t["spec"]["resources"]["requests"]["storage"] == "10Gi");
  CHECK(t["spec"]["storageClassName"] == "fast");
  CHECK(agent(b)["volumeMounts"][1] == nlohmann::json({{"name", "sandbox-data"}, {"mountPath", "/sandbox"}}));
  CHECK(crd().validate("v1beta1", b).empty());
  CHECK(crd().validate("v1alpha1", sandbox_body("v1alpha1", "x1", spec(), c)).empty());
}

TEST_CASE("check_spec refuses what Kubernetes would, naming the field") {
  auto field = [](const v1::SandboxSpec& s) {
    try {
      check_spec(s);
    } catch (const Error& e) {
      return e.field();
    }
    return std::string("ok");
  };
  CHECK(field(spec()) == "ok");
  auto s = spec();
  s.set_name("has space");
  CHECK(field(s) == "name");
  s = spec();
  (*s.mutable_labels())["k"] = "a value with spaces";
  CHECK(field(s) == "labels");
  s = spec();
  (*s.mutable_env())["1BAD=NAME"] = "x";
  CHECK(field(s) == "env");
  s = spec();
  s.clear_image();
  CHECK(field(s) == "image");
}

TEST_CASE("status: Ready=True runs, suspended is stopped, a terminated agent gives its code, else starting") {
  auto obj = nlohmann::json::parse(R"({"metadata":{"name":"bw-x1","namespace":"agents","labels":{"io.bulwark.sandbox_id":"x1"}},
    "spec":{"operatingMode":"Running"},
    "status":{"conditions":[{"type":"Ready","status":"True","reason":"DependenciesReady","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}})");
  auto st = status_from_resource(obj);
  CHECK(st.sandbox_id() == "x1");
  CHECK(st.workload_id() == "agents/bw-x1");
  CHECK(st.running());
  CHECK_FALSE(needs_pod(obj));

  auto stopped = obj;
  stopped["spec"]["operatingMode"] = "Suspended";
  st = status_from_resource(stopped);
  CHECK_FALSE(st.running());
  CHECK(st.exited());
  auto alpha = obj;
  alpha["spec"] = {{"replicas", 0}};
  CHECK(status_from_resource(alpha).exited());

  auto not_ready = obj;
  not_ready["status"]["conditions"][0]["status"] = "False";
  CHECK(needs_pod(not_ready));
  st = status_from_resource(not_ready);
  CHECK_FALSE(st.running());
  CHECK_FALSE(st.exited());
  auto pod = nlohmann::json::parse(R"({"status":{"phase":"Failed","containerStatuses":[
    {"name":"agent","state":{"terminated":{"exitCode":137,"reason":"OOMKilled"}}}]}})");
  st = status_from_resource(not_ready, pod);
  CHECK(st.exited());
  CHECK(st.exit_code() == 137);
  CHECK(st.reason().find("memory") != std::string::npos);

  auto deleting = obj;
  deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  CHECK_FALSE(status_from_resource(deleting).running());
}
