#pragma once
// How a sandbox becomes an agents.x-k8s.io Sandbox resource, and what a resource's status means
// for Bulwark. Pure: no socket; the backend does the I/O.
//
// The pod: an init container from --supervisor-image copies the supervisor bundle (its /.bulwark:
// bin/, lib/ with the loader) into an emptyDir; the agent container (the sandbox's image, any
// image) mounts that emptyDir read-only at /.bulwark and runs the supervisor through the bundled
// loader as its first process. The supervisor then confines the agent command.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/v1/driver.pb.h"
#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::k8s {

inline constexpr const char* kManagedLabel = "io.bulwark.managed";
inline constexpr const char* kSandboxLabel = "io.bulwark.sandbox_id";
inline constexpr const char* kDriverLabel = "io.bulwark.driver_id";
inline constexpr const char* kNameLabel = "io.bulwark.name";
inline constexpr const char* kUserLabelPrefix = "io.bulwark.label.";
inline constexpr const char* kBundleMount = "/.bulwark";
inline constexpr const char* kAgentContainer = "agent";
inline constexpr const char* kDataVolume = "sandbox-data";
inline constexpr const char* kGpuResource = "nvidia.com/gpu";

struct ResourceConfig {
  std::string driver_id;
  std::string namespace_name;
  std::string nats_url;           // as reachable from inside the pod (a Service address)
  std::string supervisor_image;   // holds the bundle at /.bulwark and a `cp`
  std::string storage_size;       // "" = no volumeClaimTemplate; else a quantity such as 10Gi
  std::string storage_class;      // "" = the cluster's default StorageClass
  std::string image_pull_policy = "IfNotPresent";
};

// The capabilities the supervisor needs (the same list as driver-docker's on a bridge, for the
// same reasons: see services/driver-docker/container_spec.cpp).
std::vector<std::string> capabilities();

// "bw-<sandbox_id>" (a DNS-1123 label). Throws Error(kInvalidArgument, "sandbox_id") when the id
// cannot make one.
std::string resource_name(const std::string& sandbox_id);
// "io.bulwark.driver_id=<id>,io.bulwark.managed=true"
std::string label_selector(const std::string& driver_id);

// Problems Kubernetes would reject (label values, names, quantities), each an Error naming the
// field, so validate() says them before a create does.
void check_spec(const v1::SandboxSpec& spec);

// A Kubernetes quantity ("10Gi", "500m", "1e3"), as the API server's pattern accepts it.
bool is_quantity(const std::string& q);

// CPUs as a quantity: 0.5 -> "500m", 2 -> "2". Bytes: "536870912".
std::string cpu_quantity(double cpus);

// The Sandbox resource for `version` ("v1beta1" or "v1alpha1").
nlohmann::json sandbox_body(const std::string& version, const std::string& sandbox_id, const v1::SandboxSpec& spec,
                            const ResourceConfig& c);
// The merge patch that stops (running=false) or starts the sandbox: v1beta1's operatingMode
// Suspended/Running, v1alpha1's replicas 0/1.
nlohmann::json run_patch(const std::string& version, bool running);
// Whether the resource asks to run (not suspended, replicas not 0).
bool wants_running(const nlohmann::json& obj);

// The workload state of a Sandbox resource: running when Ready=True; exited (reason "stopped")
// when suspended; exited with the agent container's code when `pod` shows it terminated;
// otherwise starting (neither). workload_id is "<namespace>/<name>".
v1::WorkloadStatus status_from_resource(const nlohmann::json& obj, const std::optional<nlohmann::json>& pod = {});
// Whether status_from_resource needs the pod to tell "starting" from "ended".
bool needs_pod(const nlohmann::json& obj);

}  // namespace bulwark::k8s
