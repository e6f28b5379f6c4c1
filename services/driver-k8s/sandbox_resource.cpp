#include "services/driver-k8s/sandbox_resource.h"

#include <cmath>
#include <map>
#include <regex>

#include "shared/error.h"

namespace bulwark::k8s {

namespace {

// Kubernetes' own syntax rules (apimachinery validation), checked here so a sandbox that cannot
// become a resource fails in validate with the field to change.
bool is_label_value(const std::string& v) {
  static const std::regex re("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$");
  return v.size() <= 63 && std::regex_match(v, re);
}
bool is_label_name(const std::string& v) {
  static const std::regex re("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$");
  return !v.empty() && v.size() <= 63 && std::regex_match(v, re);
}
bool is_env_name(const std::string& v) {
  static const std::regex re("^[-._a-zA-Z][-._a-zA-Z0-9]*$");
  return std::regex_match(v, re);
}

nlohmann::json ownership_labels(const std::string& sandbox_id, const v1::SandboxSpec& spec, const std::string& driver_id) {
  nlohmann::json labels = {{kManagedLabel, "true"}, {kSandboxLabel, sandbox_id}, {kDriverLabel, driver_id}};
  if (!spec.name().empty()) labels[kNameLabel] = spec.name();
  for (const auto& [k, v] : spec.labels()) labels[kUserLabelPrefix + k] = v;
  return labels;
}

const nlohmann::json* find_condition(const nlohmann::json& obj, const std::string& type) {
  auto st = obj.find("status");
  if (st == obj.end() || !st->is_object()) return nullptr;
  auto conds = st->find("conditions");
  if (conds == st->end() || !conds->is_array()) return nullptr;
  for (const auto& c : *conds)
    if (c.is_object() && c.value("type", "") == type) return &c;
  return nullptr;
}

}  // namespace

std::vector<std::string> capabilities() {
  // Everything else is dropped (drop ALL). Each is a step of the supervisor (supervisor/contain.cpp);
  // the agent drops all of them before it runs. AUDIT_READ is left out: a pod has its own network
  // namespace, where the kernel delivers no audit records (see docs/drivers.md, driver-docker).
  // NET_BIND_SERVICE: the sandbox's DNS responder listens on port 53.
  return {"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_BIND_SERVICE"};
}

std::string resource_name(const std::string& sandbox_id) {
  std::string n = "bw-" + sandbox_id;
  for (char& ch : n) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (ch == '_') ch = '-';
  }
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
  if (n.size() > 63 || !std::regex_match(n, re))
    throw Error(Code::kInvalidArgument, "sandbox_id '" + sandbox_id + "' cannot name a Kubernetes resource", "sandbox_id");
  return n;
}

std::string label_selector(const std::string& driver_id) {
  return std::string(kDriverLabel) + "=" + driver_id + "," + kManagedLabel + "=true";
}

void check_spec(const v1::SandboxSpec& spec) {
  if (spec.image().empty()) throw Error(Code::kInvalidArgument, "image is required by driver-k8s", "image");
  if (!is_label_value(spec.name()))
    throw Error(Code::kInvalidArgument,
                "name '" + spec.name() +
                    "' cannot be a Kubernetes label value: use at most 63 letters, digits, '-', '_' or '.', starting and "
                    "ending with a letter or digit",
                "name");
  for (const auto& [k, v] : spec.labels()) {
    if (!is_label_name(kUserLabelPrefix + k) || k.find('/') != std::string::npos)
      throw Error(Code::kInvalidArgument,
                  "label key '" + k + "' cannot be a Kubernetes label: use letters, digits, '-', '_' or '.' (at most " +
                      std::to_string(63 - std::string(kUserLabelPrefix).size()) + " characters)",
                  "labels");
    if (!is_label_value(v))
      throw Error(Code::kInvalidArgument,
                  "label '" + k + "' value '" + v +
                      "' cannot be a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', starting and "
                      "ending with a letter or digit",
                  "labels");
  }
  for (const auto& [k, v] : spec.env())
    if (!is_env_name(k))
      throw Error(Code::kInvalidArgument, "env name '" + k + "' is not a valid Kubernetes environment variable name", "env");
  const auto& r = spec.resources();
  if (r.cpus() < 0 || !std::isfinite(r.cpus()))
    throw Error(Code::kInvalidArgument, "resources.cpus must be a positive number of CPUs", "resources.cpus");
}

bool is_quantity(const std::string& q) {
  static const std::regex re(
      "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$");
  return std::regex_match(q, re);
}

std::string cpu_quantity(double cpus) {
  auto milli = static_cast<int64_t>(std::llround(cpus * 1000));
  if (milli % 1000 == 0) return std::to_string(milli / 1000);
  return std::to_string(milli) + "m";
}

nlohmann::json sandbox_body(const std::string& version, const std::string& sandbox_id, const v1::SandboxSpec& spec,
                            const ResourceConfig& c) {
  const std::string b = kBundleMount;
  const std::string name = resource_name(sandbox_id);
  nlohmann::json labels = ownership_labels(sandbox_id, spec, c.driver_id);

  // The supervisor runs through the bundled loader and libraries, so any image works.
  nlohmann::json command = {b + "/lib/ld.so", "--library-path", b + "/lib", b + "/bin/bulwark-supervisor"};
  nlohmann::json args = nlohmann::json::array();
  // With providers the agent must not start without their environment, which the supervisor
  // fetches from gateway-api itself: no credential passes through this resource.
  if (spec.providers_size() > 0) args = {"--provider-env", "required"};
  // The sandbox outlives its agent (exec, download) until deleted.
  if (spec.keep_after_exit()) args.push_back("--keep-after-exit=true");
  args.push_back("--");
  for (const auto& a : spec.command()) args.push_back(a);

  // Sorted (a protobuf map has no order), the supervisor's own set last so a user's env cannot
  // point it elsewhere.
  std::map<std::string, std::string> env_map(spec.env().begin(), spec.env().end());
  env_map.erase("BULWARK_SANDBOX_ID");
  env_map.erase("BULWARK_NATS_URL");
  env_map.erase("BULWARK_POLICY_YAML");
  nlohmann::json env = nlohmann::json::array();
  for (const auto& [k, v] : env_map) env.push_back({{"name", k}, {"value", v}});
  env.push_back({{"name", "BULWARK_SANDBOX_ID"}, {"value", sandbox_id}});
  env.push_back({{"name", "BULWARK_NATS_URL"}, {"value", c.nats_url}});
  if (!spec.policy().empty()) env.push_back({{"name", "BULWARK_POLICY_YAML"}, {"value", spec.policy()}});

  nlohmann::json limits = nlohmann::json::object();
  const auto& res = spec.resources();
  if (res.cpus() > 0) limits["cpu"] = cpu_quantity(res.cpus());
  if (res.memory_bytes() > 0) limits["memory"] = std::to_string(res.memory_bytes());
  // Extended resources are whole devices, requested by limit (the request defaults to it).
  if (res.gpus() > 0) limits[kGpuResource] = std::to_string(res.gpus());

  nlohmann::json mounts = {{{"name", "bulwark-bundle"}, {"mountPath", b}, {"readOnly", true}}};
  if (!c.storage_size.empty()) mounts.push_back({{"name", kDataVolume}, {"mountPath", "/sandbox"}});

  nlohmann::json agent = {
      {"name", kAgentContainer},
      {"image", spec.image()},
      {"imagePullPolicy", c.image_pull_policy},
      {"command", command},
      {"args", args},
      {"env", env},
      {"volumeMounts", mounts},
      {"tty", false},
      {"stdin", false},
      {"securityContext",
       {
           // The supervisor starts as root and makes the agent the sandbox user itself.
           {"runAsUser", 0},
           {"runAsNonRoot", false},
           {"privileged", false},
           {"capabilities", {{"drop", {"ALL"}}, {"add", capabilities()}}},
           // The agent gets the supervisor's own seccomp filter, whose denials go to a listener
           // that logs them; the runtime's default profile would refuse the supervisor's
           // unshare/mount calls. AppArmor's runtime default denies mount(2).
           {"seccompProfile", {{"type", "Unconfined"}}},
           {"appArmorProfile", {{"type", "Unconfined"}}},
           // A fresh /proc for the agent's PID namespace can only be mounted where /proc is fully
           // visible (podman's unmask=ALL, docker's empty MaskedPaths).
           {"procMount", "Unmasked"},
       }},
  };
  if (!limits.empty()) agent["resources"] = {{"limits", limits}};

  nlohmann::json copier = {
      {"name", "bulwark-bundle"},
      {"image", c.supervisor_image},
      {"imagePullPolicy", c.image_pull_policy},
      {"command", {"cp", "-a", b + "/.", "/bulwark-out/"}},
      {"volumeMounts", {{{"name", "bulwark-bundle"}, {"mountPath", "/bulwark-out"}}}},
      {"securityContext",
       {{"capabilities", {{"drop", {"ALL"}}}}, {"allowPrivilegeEscalation", false}, {"readOnlyRootFilesystem", true}}},
  };

  nlohmann::json pod_spec = {
      {"initContainers", {copier}},
      {"containers", {agent}},
      {"volumes", {{{"name", "bulwark-bundle"}, {"emptyDir", nlohmann::json::object()}}}},
      // The supervisor is PID 1 and reports the agent's end; a sandbox is never restarted.
      {"restartPolicy", "Never"},
      // The agent must not reach the cluster's API with the pod's identity.
      {"automountServiceAccountToken", false},
      {"enableServiceLinks", false},
      {"terminationGracePeriodSeconds", 10},
  };
  if (!spec.name().empty() && is_label_name(spec.name()) && spec.name().find('.') == std::string::npos &&
      spec.name().find('_') == std::string::npos)
    pod_spec["hostname"] = [&] {
      std::string h = spec.name();
      for (char& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return h;
    }();

  nlohmann::json sandbox_spec = {
      {"podTemplate", {{"metadata", {{"labels", labels}}}, {"spec", pod_spec}}},
  };
  if (!c.storage_size.empty()) {
    nlohmann::json claim = {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", c.storage_size}}}}}};
    if (!c.storage_class.empty()) claim["storageClassName"] = c.storage_class;
    sandbox_spec["volumeClaimTemplates"] = {{{"metadata", {{"name", kDataVolume}, {"labels", labels}}}, {"spec", claim}}};
  }
  if (version == "v1alpha1")
    sandbox_spec["replicas"] = 1;
  else
    sandbox_spec["operatingMode"] = "Running";

  return {
      {"apiVersion", std::string("agents.x-k8s.io/") + version},
      {"kind", "Sandbox"},
      {"metadata", {{"name", name}, {"namespace", c.namespace_name}, {"labels", labels}}},
      {"spec", sandbox_spec},
  };
}

nlohmann::json run_patch(const std::string& version, bool running) {
  if (version == "v1alpha1") return {{"spec", {{"replicas", running ? 1 : 0}}}};
  return {{"spec", {{"operatingMode", running ? "Running" : "Suspended"}}}};
}

bool wants_running(const nlohmann::json& obj) {
  auto spec = obj.find("spec");
  if (spec == obj.end() || !spec->is_object()) return true;
  if (spec->contains("operatingMode") && (*spec)["operatingMode"] == "Suspended") return false;
  if (spec->contains("replicas") && (*spec)["replicas"].is_number() && (*spec)["replicas"].get<int64_t>() == 0) return false;
  return true;
}

bool needs_pod(const nlohmann::json& obj) {
  if (!wants_running(obj)) return false;
  const auto* ready = find_condition(obj, "Ready");
  return !(ready && ready->value("status", "") == "True");
}

v1::WorkloadStatus status_from_resource(const nlohmann::json& obj, const std::optional<nlohmann::json>& pod) {
  v1::WorkloadStatus st;
  const auto& meta = obj.contains("metadata") ? obj["metadata"] : nlohmann::json::object();
  if (meta.contains("labels") && meta["labels"].is_object())
    st.set_sandbox_id(meta["labels"].value(kSandboxLabel, ""));
  st.set_workload_id(meta.value("namespace", "") + "/" + meta.value("name", ""));
  if (meta.contains("deletionTimestamp")) {
    st.set_reason("being deleted");
    return st;
  }
  if (!wants_running(obj)) {
    st.set_exited(true);
    st.set_reason("stopped");
    return st;
  }
  const auto* ready = find_condition(obj, "Ready");
  if (ready && ready->value("status", "") == "True") {
    st.set_running(true);
    return st;
  }
  // Not ready: starting, or the pod ended (restartPolicy Never). Only the pod knows the code.
  if (pod && pod->contains("status")) {
    const auto& ps = (*pod)["status"];
    if (ps.contains("containerStatuses") && ps["containerStatuses"].is_array())
      for (const auto& cs : ps["containerStatuses"]) {
        if (cs.value("name", "") != kAgentContainer) continue;
        if (cs.contains("state") && cs["state"].contains("terminated")) {
          const auto& t = cs["state"]["terminated"];
          st.set_exited(true);
          st.set_exit_code(t.value("exitCode", 0));
          std::string why = t.value("reason", "");
          if (why == "OOMKilled") st.set_reason("killed by the memory limit (OOMKilled)");
          else if (why != "Completed" && why != "Error") st.set_reason(why);
          return st;
        }
      }
    std::string phase = ps.value("phase", "");
    if (phase == "Failed" || phase == "Succeeded") {
      st.set_exited(true);
      st.set_exit_code(phase == "Succeeded" ? 0 : 1);
      st.set_reason(ps.value("message", ps.value("reason", "the pod " + phase)));
      return st;
    }
  }
  if (ready) st.set_reason(ready->value("message", ready->value("reason", "")));
  return st;
}

}  // namespace bulwark::k8s
