// The fake API server's validator must reject what the real one rejects, or the driver's tests
// would prove nothing.
#include "tests/support/fake_kube_api.h"

#include <doctest/doctest.h>

using namespace bulwark::testing;
using nlohmann::json;

namespace {
const CrdSchema& crd() {
  static CrdSchema s = CrdSchema::load(sandbox_crd_path());
  return s;
}
json minimal(const std::string& version) {
  return {{"apiVersion", "agents.x-k8s.io/" + version},
          {"kind", "Sandbox"},
          {"metadata", {{"name", "bw-1"}, {"labels", {{"io.bulwark.managed", "true"}}}}},
          {"spec", {{"podTemplate", {{"spec", {{"containers", {{{"name", "agent"}, {"image", "busybox"}}}}}}}}}}};
}
bool has(const std::vector<std::string>& errs, const std::string& part) {
  for (const auto& e : errs)
    if (e.find(part) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST_CASE("the CRD fixture has both versions") {
  CHECK(crd().versions() == std::vector<std::string>{"v1alpha1", "v1beta1"});
}

TEST_CASE("a minimal Sandbox is valid in both versions") {
  CHECK(crd().validate("v1beta1", minimal("v1beta1")).empty());
  CHECK(crd().validate("v1alpha1", minimal("v1alpha1")).empty());
}

TEST_CASE("unknown fields are rejected with their path") {
  auto b = minimal("v1beta1");
  b["spec"]["podTemplate"]["spec"]["containers"][0]["securityContext"] = {{"capabilties", {{"add", {"SYS_ADMIN"}}}}};
  auto errs = crd().validate("v1beta1", b);
  CHECK(has(errs, "spec.podTemplate.spec.containers[0].securityContext.capabilties: unknown field"));
  // v1beta1's operatingMode does not exist in v1alpha1, and v1alpha1's replicas not in v1beta1.
  auto a = minimal("v1alpha1");
  a["spec"]["operatingMode"] = "Running";
  CHECK(has(crd().validate("v1alpha1", a), "spec.operatingMode: unknown field"));
  b = minimal("v1beta1");
  b["spec"]["replicas"] = 1;
  CHECK(has(crd().validate("v1beta1", b), "spec.replicas: unknown field"));
  b = minimal("v1beta1");
  b["metadata"]["bogus"] = 1;
  CHECK(has(crd().validate("v1beta1", b), "metadata.bogus: unknown field"));
}

TEST_CASE("types, enums, required, bounds, patterns and int-or-string") {
  auto b = minimal("v1beta1");
  b["spec"]["operatingMode"] = "Paused";
  CHECK(has(crd().validate("v1beta1", b), "spec.operatingMode: Unsupported value"));
  b = minimal("v1beta1");
  b["spec"].erase("podTemplate");
  CHECK(has(crd().validate("v1beta1", b), "spec.podTemplate: Required value"));
  b = minimal("v1beta1");
  b["spec"]["podTemplate"]["spec"]["containers"][0].erase("name");
  CHECK(has(crd().validate("v1beta1", b), "containers[0].name: Required value"));
  b = minimal("v1beta1");
  b["spec"]["podTemplate"]["spec"]["containers"][0]["command"] = "sh -c x";
  CHECK(has(crd().validate("v1beta1", b), "containers[0].command: Invalid value: \"string\": must be of type array"));
  auto a = minimal("v1alpha1");
  a["spec"]["replicas"] = 2;
  CHECK(has(crd().validate("v1alpha1", a), "spec.replicas: Invalid value: 2: should be less than or equal to 1"));
  a["spec"]["replicas"] = "1";
  CHECK(has(crd().validate("v1alpha1", a), "must be of type integer"));
  b = minimal("v1beta1");
  b["spec"]["podTemplate"]["spec"]["containers"][0]["resources"] = {{"limits", {{"nvidia.com/gpu", "two"}}}};
  CHECK(has(crd().validate("v1beta1", b), "limits.nvidia.com/gpu: Invalid value: \"two\": should match"));
  b["spec"]["podTemplate"]["spec"]["containers"][0]["resources"] = {{"limits", {{"nvidia.com/gpu", 2}, {"memory", "512Mi"}}}};
  CHECK(crd().validate("v1beta1", b).empty());
  b["spec"]["podTemplate"]["spec"]["containers"][0]["resources"] = {{"limits", {{"cpu", true}}}};
  CHECK(has(crd().validate("v1beta1", b), "must be an integer or a string"));
  b = minimal("v1beta1");
  b["spec"]["shutdownTime"] = "tomorrow";
  CHECK(has(crd().validate("v1beta1", b), "spec.shutdownTime: Invalid value"));
  b = minimal("v1beta1");
  b["spec"]["podTemplate"]["spec"]["containers"].push_back({{"name", "agent"}, {"image", "x"}});
  CHECK(has(crd().validate("v1beta1", b), "Duplicate value"));
}

TEST_CASE("ObjectMeta: names and labels as the API server checks them") {
  auto b = minimal("v1beta1");
  b["metadata"]["name"] = "BW_1";
  CHECK(has(crd().validate("v1beta1", b), "metadata.name: Invalid value"));
  b = minimal("v1beta1");
  b["metadata"]["labels"]["io.bulwark.name"] = "has spaces";
  CHECK(has(crd().validate("v1beta1", b), "metadata.labels: Invalid value: \"has spaces\""));
}

TEST_CASE("defaults are applied as the API server would") {
  auto b = minimal("v1beta1");
  crd().apply_defaults("v1beta1", b);
  CHECK(b["spec"]["operatingMode"] == "Running");
  CHECK(b["spec"]["shutdownPolicy"] == "Retain");
  auto a = minimal("v1alpha1");
  crd().apply_defaults("v1alpha1", a);
  CHECK(a["spec"]["replicas"] == 1);
}

TEST_CASE("merge patch (RFC 7386)") {
  json t = {{"a", 1}, {"b", {{"c", 2}, {"d", 3}}}};
  merge_patch(t, {{"b", {{"c", nullptr}, {"e", 4}}}, {"f", {1, 2}}});
  CHECK(t == json({{"a", 1}, {"b", {{"d", 3}, {"e", 4}}}, {"f", {1, 2}}}));
}
