#include "tests/support/fake_kube_api.h"

#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <yaml-cpp/yaml.h>

#include <sys/socket.h>

#include <csignal>
#include <ctime>
#include <deque>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "services/driver-podman/podman_client.h"
#include "shared/driver_host.h"
#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::testing {

using nlohmann::json;

std::string sandbox_crd_path() { return std::string(BULWARK_SOURCE_DIR) + "/tests/fixtures/k8s/agents.x-k8s.io_sandboxes.yaml"; }

namespace {

// YAML -> JSON keeping YAML's own typing: a quoted scalar ('True') stays a string.
json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = n.Scalar();
      if (n.Tag() == "!") return s;
      if (s == "true") return true;
      if (s == "false") return false;
      static const std::regex int_re("^-?[0-9]+$"), num_re("^-?[0-9]+\\.[0-9]+$");
      if (std::regex_match(s, int_re)) return std::stoll(s);
      if (std::regex_match(s, num_re)) return std::stod(s);
      return s;
    }
    default:
      return nullptr;
  }
}

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string type_name(const json& v) {
  if (v.is_object()) return "object";
  if (v.is_array()) return "array";
  if (v.is_string()) return "string";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return "null";
}

bool is_dns_subdomain(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}
bool is_qualified_name(const std::string& s) {
  static const std::regex name_re("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$");
  auto slash = s.find('/');
  std::string name = slash == std::string::npos ? s : s.substr(slash + 1);
  if (slash != std::string::npos && !is_dns_subdomain(s.substr(0, slash))) return false;
  return !name.empty() && name.size() <= 63 && std::regex_match(name, name_re);
}
bool is_label_value(const std::string& s) {
  static const std::regex re("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$");
  return s.size() <= 63 && std::regex_match(s, re);
}

// ObjectMeta as the API server checks it (the CRD's schema leaves metadata to it).
void check_object_meta(const json& m, const std::string& path, std::vector<std::string>& errs) {
  static const std::set<std::string> known = {"name", "generateName", "namespace", "labels", "annotations", "uid",
                                              "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                                              "deletionGracePeriodSeconds", "finalizers", "ownerReferences",
                                              "managedFields", "selfLink"};
  if (!m.is_object()) {
    errs.push_back(path + ": Invalid value: must be of type object");
    return;
  }
  for (const auto& [k, v] : m.items())
    if (!known.count(k)) errs.push_back(path + "." + k + ": unknown field");
  if (m.contains("name") && (!m["name"].is_string() || !is_dns_subdomain(m["name"].get<std::string>())))
    errs.push_back(path + ".name: Invalid value: " + m["name"].dump() + ": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'");
  for (const char* map : {"labels", "annotations"}) {
    if (!m.contains(map)) continue;
    if (!m[map].is_object()) {
      errs.push_back(path + "." + map + ": Invalid value: must be of type object");
      continue;
    }
    for (const auto& [k, v] : m[map].items()) {
      if (!is_qualified_name(k)) errs.push_back(path + "." + map + ": Invalid value: \"" + k + "\": name part must consist of alphanumeric characters, '-', '_' or '.'");
      if (!v.is_string()) errs.push_back(path + "." + map + "." + k + ": Invalid value: must be a string");
      else if (std::string(map) == "labels" && !is_label_value(v.get<std::string>()))
        errs.push_back(path + ".labels: Invalid value: \"" + v.get<std::string>() + "\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'");
    }
  }
}

void validate_node(const json& s, const json& v, const std::string& path, std::vector<std::string>& errs) {
  if (v.is_null()) return;  // a null is pruned like an absent field
  const std::string at = path.empty() ? "<root>" : path;
  if (s.value("x-kubernetes-int-or-string", false)) {
    if (!v.is_number_integer() && !v.is_string()) {
      errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be an integer or a string");
    } else if (v.is_string() && s.contains("pattern") && !std::regex_search(v.get<std::string>(), std::regex(s["pattern"].get<std::string>()))) {
      errs.push_back(at + ": Invalid value: " + v.dump() + ": should match '" + s["pattern"].get<std::string>() + "'");
    }
    return;
  }
  if (s.contains("enum")) {
    bool found = false;
    for (const auto& e : s["enum"]) found = found || e == v;
    if (!found) errs.push_back(at + ": Unsupported value: " + v.dump() + ": supported values: " + s["enum"].dump());
  }
  const std::string type = s.value("type", "");
  if (type == "object") {
    if (!v.is_object()) {
      errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be of type object");
      return;
    }
    if (s.contains("required"))
      for (const auto& r : s["required"])
        if (!v.contains(r.get<std::string>()) || v[r.get<std::string>()].is_null())
          errs.push_back((path.empty() ? "" : path + ".") + r.get<std::string>() + ": Required value");
    bool preserve = s.value("x-kubernetes-preserve-unknown-fields", false);
    const json* props = s.contains("properties") ? &s["properties"] : nullptr;
    const json* extra = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    for (const auto& [k, child] : v.items()) {
      std::string p = path.empty() ? k : path + "." + k;
      if (props && props->contains(k)) {
        validate_node((*props)[k], child, p, errs);
      } else if (extra && extra->is_object()) {
        validate_node(*extra, child, p, errs);
      } else if (!preserve && !(extra && extra->is_boolean() && extra->get<bool>())) {
        errs.push_back(p + ": unknown field (not declared in the schema)");
      }
    }
    return;
  }
  if (type == "array") {
    if (!v.is_array()) {
      errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be of type array");
      return;
    }
    for (size_t i = 0; i < v.size(); ++i)
      if (s.contains("items")) validate_node(s["items"], v[i], path + "[" + std::to_string(i) + "]", errs);
    // x-kubernetes-list-type: map -> the keys identify each entry once.
    if (s.value("x-kubernetes-list-type", "") == "map" && s.contains("x-kubernetes-list-map-keys")) {
      std::set<std::string> seen;
      for (size_t i = 0; i < v.size(); ++i) {
        json key = json::array();
        for (const auto& k : s["x-kubernetes-list-map-keys"]) key.push_back(v[i].is_object() ? v[i].value(k.get<std::string>(), json()) : json());
        if (!seen.insert(key.dump()).second) errs.push_back(path + "[" + std::to_string(i) + "]: Duplicate value: " + key.dump());
      }
    }
    return;
  }
  if (type == "string") {
    if (!v.is_string()) {
      errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be of type string");
      return;
    }
    const auto& str = v.get_ref<const std::string&>();
    if (s.contains("maxLength") && str.size() > s["maxLength"].get<size_t>())
      errs.push_back(at + ": Too long: may not be longer than " + s["maxLength"].dump());
    if (s.contains("minLength") && str.size() < s["minLength"].get<size_t>())
      errs.push_back(at + ": Invalid value: should be at least " + s["minLength"].dump() + " chars long");
    if (s.contains("pattern") && !std::regex_search(str, std::regex(s["pattern"].get<std::string>())))
      errs.push_back(at + ": Invalid value: " + v.dump() + ": should match '" + s["pattern"].get<std::string>() + "'");
    if (s.value("format", "") == "date-time") {
      static const std::regex dt("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$");
      if (!std::regex_match(str, dt)) errs.push_back(at + ": Invalid value: " + v.dump() + ": must be a date-time (RFC 3339)");
    }
    return;
  }
  if (type == "integer") {
    if (!v.is_number_integer()) {
      errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be of type integer");
      return;
    }
    long double n = v.is_number_unsigned() ? static_cast<long double>(v.get<uint64_t>()) : static_cast<long double>(v.get<int64_t>());
    if (s.value("format", "") == "int32" && (n < INT32_MIN || n > INT32_MAX)) errs.push_back(at + ": Invalid value: out of int32 range");
    if (s.contains("minimum") && n < s["minimum"].get<long double>())
      errs.push_back(at + ": Invalid value: " + v.dump() + ": should be greater than or equal to " + s["minimum"].dump());
    if (s.contains("maximum") && n > s["maximum"].get<long double>())
      errs.push_back(at + ": Invalid value: " + v.dump() + ": should be less than or equal to " + s["maximum"].dump());
    return;
  }
  if (type == "number" && !v.is_number()) errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be of type number");
  if (type == "boolean" && !v.is_boolean()) errs.push_back(at + ": Invalid value: \"" + type_name(v) + "\": must be of type boolean");
}

void defaults_node(const json& s, json& v) {
  if (v.is_object() && s.contains("properties")) {
    for (const auto& [k, ps] : s["properties"].items()) {
      if (!v.contains(k) && ps.contains("default")) v[k] = ps["default"];
      if (v.contains(k)) defaults_node(ps, v[k]);
    }
  } else if (v.is_object() && s.contains("additionalProperties") && s["additionalProperties"].is_object()) {
    for (auto& [k, child] : v.items()) defaults_node(s["additionalProperties"], child);
  } else if (v.is_array() && s.contains("items")) {
    for (auto& e : v) defaults_node(s["items"], e);
  }
}

bool selector_matches(const std::string& selector, const json& obj) {
  const json labels = obj["metadata"].value("labels", json::object());
  std::stringstream ss(selector);
  std::string term;
  while (std::getline(ss, term, ',')) {
    if (term.empty()) continue;
    auto eq = term.find('=');
    if (eq == std::string::npos) return labels.contains(term);
    std::string k = term.substr(0, eq), v = term.substr(term[eq + 1] == '=' ? eq + 2 : eq + 1);
    if (!labels.contains(k) || labels[k] != v) return false;
  }
  return true;
}

json status_body(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Failure"},
          {"message", message}, {"reason", reason}, {"code", code}};
}

void reply(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

}  // namespace

CrdSchema CrdSchema::load(const std::string& path) {
  json crd = to_json(YAML::LoadFile(path));
  CrdSchema s;
  for (const auto& v : crd["spec"]["versions"]) s.schemas_[v["name"]] = v["schema"]["openAPIV3Schema"];
  if (s.schemas_.empty()) throw Error(Code::kInternal, path + " has no versions with a schema");
  return s;
}

std::vector<std::string> CrdSchema::versions() const {
  std::vector<std::string> out;
  for (const auto& [v, s] : schemas_) out.push_back(v);
  return out;
}

std::vector<std::string> CrdSchema::validate(const std::string& version, const json& object) const {
  auto it = schemas_.find(version);
  if (it == schemas_.end()) return {"apiVersion: the CRD has no version " + version};
  std::vector<std::string> errs;
  json without_meta = object;
  if (object.is_object() && object.contains("metadata")) {
    check_object_meta(object["metadata"], "metadata", errs);
    without_meta.erase("metadata");
  }
  validate_node(it->second, without_meta, "", errs);
  return errs;
}

void CrdSchema::apply_defaults(const std::string& version, json& object) const {
  auto it = schemas_.find(version);
  if (it != schemas_.end()) defaults_node(it->second, object);
}

void merge_patch(json& target, const json& patch) {
  if (!patch.is_object()) {
    target = patch;
    return;
  }
  if (!target.is_object()) target = json::object();
  for (const auto& [k, v] : patch.items()) {
    if (v.is_null())
      target.erase(k);
    else
      merge_patch(target[k], v);
  }
}

namespace {

// What the controller reads from a Sandbox's spec: should its pod exist?
bool sandbox_wants_running(const json& obj) {
  if (!obj.contains("spec") || !obj["spec"].is_object()) return true;
  const json& spec = obj["spec"];
  return spec.value("operatingMode", "Running") != "Suspended" && spec.value("replicas", 1) != 0;
}

}  // namespace

// The fake's kubelet: runs a Sandbox's pod as ONE podman container, the pod template's agent
// container (the one named "agent", else the first), with
//   image, command (entrypoint) + args, env, hostname, runAsUser, the securityContext's
//   capabilities (drop ALL + add), seccomp unconfined and `unmask: ALL` (its
//   seccompProfile Unconfined / procMount Unmasked), in the HOST network namespace as
//   driver-podman runs it (a pod network is what a real cluster adds; here the supervisor must
//   reach the test's NATS on loopback).
// Substituted: no init container runs. The emptyDir an init container fills (the supervisor
// bundle copied out of --supervisor-image) is instead the host's bundle
// (<bindir>/supervisor-bundle) bind-mounted read-only at the same mountPath: no supervisor image
// has to be built for a test.
// A volumeClaimTemplates entry (a PVC) is a podman named volume: stop (Suspended / replicas 0)
// removes the container as the controller deletes the pod, start creates a new one on the same
// volume, delete removes both. Without a claim the container is kept and just stopped/started,
// so its files survive stop/start either way.
// Not mapped: resources.limits, other volumes. All podman work runs on the kubelet's own thread,
// never under the API server's lock, in the order the Sandbox changed.
class FakeKubeApi::Kubelet {
 public:
  Kubelet(FakeKubeApi& api, const std::string& socket, std::string bundle)
      : api_(api), podman_(socket), socket_(socket), bundle_(std::move(bundle)), instance_(random_hex(4)) {
    if (bundle_.empty()) bundle_ = default_supervisor_bundle();
    check_supervisor_bundle(bundle_);
    podman_.ping();
    thread_ = std::thread([this] { run(); });
  }
  ~Kubelet() {
    {
      std::lock_guard lock(api_.mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    // Every container and volume this kubelet made, whatever state the test left them in.
    try {
      for (const auto& c : podman_.list_containers(std::string(kLabel) + "=" + instance_))
        podman_.remove_container(c.value("Id", ""));
    } catch (const std::exception&) {
    }
    for (const auto& v : volumes_) remove_volume(v);
  }

  // Under api_.mu_, on every stored change: queue what the Sandbox now asks of its pod.
  void observe(const std::string& ns, const std::string& name, const std::string& type, const json& obj) {
    std::string key = ns + "/" + name;
    Action a = type == "DELETED" ? Action::kDelete : sandbox_wants_running(obj) ? Action::kRun : Action::kStop;
    auto it = last_.find(key);
    if (it != last_.end() && it->second == a) return;
    if (a == Action::kDelete) last_.erase(key);
    else last_[key] = a;
    queue_.push_back({a, ns, name, obj});
    wake_.notify_all();
  }

 private:
  static constexpr const char* kLabel = "io.bulwark.test.fake-kubelet";
  enum class Action { kRun, kStop, kDelete };
  struct Item {
    Action action;
    std::string ns, name;
    json sandbox;
  };
  struct Pod {
    std::string container;
    std::vector<std::string> volumes;
    int grace_s = 30;
    bool started = false;  // its container should be running: watched for its end
  };

  void run() {
    std::unique_lock lock(api_.mu_);
    while (!stop_) {
      if (queue_.empty()) wake_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_ || !queue_.empty(); });
      if (stop_) break;
      if (!queue_.empty()) {
        Item item = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        handle(item);
        lock.lock();
        continue;
      }
      lock.unlock();
      watch_ends();
      lock.lock();
    }
  }

  // Under api_.mu_: the pod's status, then the controller's view of it (Ready, an event).
  void set_pod_status(const std::string& ns, const std::string& name, json status) {
    auto it = api_.pods_[ns].find(name);
    if (it == api_.pods_[ns].end()) return;  // stopped or deleted meanwhile
    it->second["status"] = std::move(status);
    api_.reconcile(ns, name);
  }

  static json terminated(int code, const std::string& reason, const std::string& message) {
    return {{"phase", code == 0 ? "Succeeded" : "Failed"},
            {"containerStatuses",
             {{{"name", "agent"},
               {"state", {{"terminated", {{"exitCode", code}, {"reason", reason}, {"message", message}}}}}}}}};
  }

  void handle(const Item& item) {
    const std::string key = item.ns + "/" + item.name;
    try {
      if (item.action == Action::kRun) {
        start(key, item);
        std::lock_guard lock(api_.mu_);
        if (last_.count(key) && last_[key] == Action::kRun)
          set_pod_status(item.ns, item.name,
                         {{"phase", "Running"},
                          {"containerStatuses", {{{"name", "agent"}, {"ready", true}, {"state", {{"running", json::object()}}}}}}});
        return;
      }
      auto it = pods_.find(key);
      if (it == pods_.end()) return;
      Pod& p = it->second;
      p.started = false;
      if (item.action == Action::kStop) {
        podman_.stop_container(p.container, p.grace_s);
        // A PVC outlives its pod; the container is the pod and goes with it.
        if (!p.volumes.empty()) podman_.remove_container(p.container);
        std::lock_guard lock(api_.mu_);
        auto& pods = api_.pods_[item.ns];
        auto pod = pods.find(item.name);
        if (pod != pods.end() && pod->second["metadata"].contains("deletionTimestamp")) pods.erase(pod);  // Terminating ends
        return;
      }
      podman_.remove_container(p.container);
      for (const auto& v : p.volumes) remove_volume(v);
      pods_.erase(it);
    } catch (const std::exception& e) {
      // The pod failed to start (bad image, podman refused the spec): the driver reads why.
      std::lock_guard lock(api_.mu_);
      if (item.action == Action::kRun) set_pod_status(item.ns, item.name, terminated(128, "StartError", e.what()));
    }
  }

  void start(const std::string& key, const Item& item) {
    auto it = pods_.find(key);
    if (it == pods_.end()) it = pods_.emplace(key, Pod{}).first;
    Pod& p = it->second;
    json spec = container_spec(item, p);
    auto existing = podman_.inspect_container(p.container);
    if (!existing) podman_.create_container(spec);
    podman_.start_container(p.container);
    p.started = true;
  }

  // The podman spec of a Sandbox's agent container (what it maps: the class comment).
  json container_spec(const Item& item, Pod& p) {
    const json& pod = item.sandbox.at("spec").at("podTemplate").at("spec");
    const json& containers = pod.at("containers");
    json agent = containers.at(0);
    for (const auto& c : containers)
      if (c.value("name", "") == "agent") agent = c;
    p.container = "bulwark-kubelet-" + item.ns + "-" + item.name;
    p.grace_s = pod.value("terminationGracePeriodSeconds", 30);
    json env = json::object();
    for (const auto& e : agent.value("env", json::array())) env[e.value("name", "")] = e.value("value", "");
    // Claims by name; emptyDir volumes an init container writes into (the supervisor bundle).
    std::set<std::string> claims, filled;
    for (const auto& t : item.sandbox["spec"].value("volumeClaimTemplates", json::array()))
      claims.insert(t["metadata"].value("name", ""));
    for (const auto& ic : pod.value("initContainers", json::array()))
      for (const auto& m : ic.value("volumeMounts", json::array())) filled.insert(m.value("name", ""));
    json mounts = json::array(), volumes = json::array();
    p.volumes.clear();
    for (const auto& m : agent.value("volumeMounts", json::array())) {
      std::string vol = m.value("name", ""), dest = m.value("mountPath", "");
      if (claims.count(vol)) {
        std::string named = p.container + "-" + vol;
        p.volumes.push_back(named);
        volumes.push_back({{"Name", named}, {"Dest", dest}});
      } else if (filled.count(vol)) {
        mounts.push_back({{"destination", dest}, {"source", bundle_}, {"type", "bind"}, {"options", {"ro"}}});
      }
    }
    {
      std::lock_guard lock(api_.mu_);
      volumes_.insert(p.volumes.begin(), p.volumes.end());
    }
    const json sc = agent.value("securityContext", json::object());
    const json caps = sc.value("capabilities", json::object());
    json body = {
        {"name", p.container},
        {"image", agent.at("image")},
        {"entrypoint", agent.value("command", json::array())},
        {"command", agent.value("args", json::array())},
        {"env", env},
        {"labels", {{kLabel, instance_}, {"io.bulwark.test.pod", item.ns + "." + item.name}}},
        {"mounts", mounts},
        {"volumes", volumes},
        {"netns", {{"nsmode", "host"}}},
        {"cap_drop", caps.value("drop", json::array())},
        {"cap_add", caps.value("add", json::array())},
        {"unmask", {"ALL"}},
        {"seccomp_profile_path", "unconfined"},
        {"stdin", false},
        {"terminal", false},
        {"remove", false},
    };
    if (sc.contains("runAsUser")) body["user"] = std::to_string(sc["runAsUser"].get<int64_t>());
    if (pod.contains("hostname")) body["hostname"] = pod["hostname"];
    return body;
  }

  // The pod's real state: a started container that ended is a terminated pod (restartPolicy Never).
  void watch_ends() {
    for (auto& [key, p] : pods_) {
      if (!p.started) continue;
      std::optional<json> c;
      try {
        c = podman_.inspect_container(p.container);
      } catch (const std::exception&) {
        continue;  // podman busy: look again on the next round
      }
      json state = c ? c->value("State", json::object()) : json::object();
      if (c && state.value("Running", false)) continue;
      p.started = false;
      int code = c ? state.value("ExitCode", 0) : 137;
      std::string reason = !c ? "ContainerStatusUnknown" : state.value("OOMKilled", false) ? "OOMKilled" : code == 0 ? "Completed" : "Error";
      auto slash = key.find('/');
      std::lock_guard lock(api_.mu_);
      set_pod_status(key.substr(0, slash), key.substr(slash + 1), terminated(code, reason, ""));
    }
  }

  void remove_volume(const std::string& name) {
    httplib::Client http(socket_);
    http.set_address_family(AF_UNIX);
    http.set_default_headers({{"Host", "podman"}});
    http.Delete("/v4.0.0/libpod/volumes/" + name + "?force=true");
  }

  FakeKubeApi& api_;
  podman::PodmanClient podman_;
  std::string socket_, bundle_, instance_;
  std::thread thread_;
  std::condition_variable wake_;
  // Under api_.mu_:
  bool stop_ = false;
  std::deque<Item> queue_;
  std::map<std::string, Action> last_;
  std::set<std::string> volumes_;
  // The kubelet thread's own:
  std::map<std::string, Pod> pods_;
};

FakeKubeApi::FakeKubeApi(FakeKubeApiOptions o)
    : o_(std::move(o)), pki_("Bulwark fake kube-apiserver CA"), crd_(CrdSchema::load(sandbox_crd_path())) {
  // A watch stream written to a driver that was killed: SSL_write's EPIPE must not kill the test.
  std::signal(SIGPIPE, SIG_IGN);
  // Either credential a real API server takes: a bearer token, or a client certificate its CA
  // signed. The certificate is asked for, not required (SSL_VERIFY_PEER alone); one that does not
  // verify fails the handshake.
  server_ = std::make_unique<httplib::SSLServer>([this](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    return SSL_CTX_use_certificate(&ctx, pki_.leaf.get()) == 1 && SSL_CTX_use_PrivateKey(&ctx, pki_.leaf_key.get()) == 1 &&
           X509_STORE_add_cert(SSL_CTX_get_cert_store(&ctx), pki_.ca.get()) == 1 &&
           SSL_CTX_add_client_CA(&ctx, pki_.ca.get()) == 1 && (SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr), true);
  });
  if (!server_->is_valid()) throw Error(Code::kInternal, "fake kube-apiserver: TLS setup failed");
  server_->set_tcp_nodelay(true);
  serve();
  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw Error(Code::kInternal, "fake kube-apiserver: cannot bind a loopback port");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  for (int i = 0; i < 500 && !server_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (!o_.kubelet_podman_socket.empty()) kubelet_ = std::make_unique<Kubelet>(*this, o_.kubelet_podman_socket, o_.kubelet_bundle_dir);
}

FakeKubeApi::~FakeKubeApi() {
  kubelet_.reset();  // its containers go while the API server is still whole
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FakeKubeApi::url() const { return "https://127.0.0.1:" + std::to_string(port_); }

std::string FakeKubeApi::write_kubeconfig(const std::string& dir, const std::string& token, const std::string& ns) const {
  std::string path = dir + "/kubeconfig";
  std::ofstream f(path);
  f << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
    << "clusters:\n- name: fake\n  cluster:\n    server: " << url() << "\n    certificate-authority: " << pki_.ca_file << "\n"
    << "users:\n- name: driver\n  user:\n    token: " << token << "\n"
    << "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: driver\n    namespace: " << ns << "\n";
  return path;
}

FakeKubeApi::ClientCert FakeKubeApi::issue_client_cert(const std::string& user) const {
  // A client certificate as `kubeadm kubeconfig user` makes one: CN = the user, clientAuth.
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  std::unique_ptr<X509, X509Free> x(X509_new());
  if (!key || !x) throw Error(Code::kInternal, "fake kube-apiserver: client key");
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), static_cast<long>(std::time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400);
  X509_set_pubkey(x.get(), key.get());
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(user.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), X509_get_subject_name(pki_.ca.get()));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, pki_.ca.get(), x.get(), nullptr, nullptr, 0);
  X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, NID_ext_key_usage, "clientAuth");
  X509_add_ext(x.get(), e, -1);
  X509_EXTENSION_free(e);
  if (X509_sign(x.get(), pki_.ca_key.get(), EVP_sha256()) <= 0) throw Error(Code::kInternal, "fake kube-apiserver: sign");
  auto pem = [](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free_all)> bio(BIO_new(BIO_s_mem()), &BIO_free_all);
    write(bio.get());
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
  };
  ClientCert out;
  out.cert_pem = pem([&](BIO* b) { PEM_write_bio_X509(b, x.get()); });
  out.key_pem = pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  return out;
}

std::string FakeKubeApi::version_of(const json& obj) const {
  std::string api = obj.value("apiVersion", "");
  auto slash = api.find('/');
  return slash == std::string::npos ? "" : api.substr(slash + 1);
}

std::vector<std::string> FakeKubeApi::check(const json& obj) {
  std::string api = obj.value("apiVersion", "");
  std::string version = version_of(obj);
  std::vector<std::string> errs;
  if (api.rfind("agents.x-k8s.io/", 0) != 0 ||
      std::find(o_.versions.begin(), o_.versions.end(), version) == o_.versions.end())
    errs.push_back("apiVersion: Invalid value: \"" + api + "\": not a served version of agents.x-k8s.io");
  if (obj.value("kind", "") != "Sandbox") errs.push_back("kind: Invalid value: " + obj.value("kind", json()).dump() + ": must be Sandbox");
  if (errs.empty())
    for (auto& e : crd_.validate(version, obj)) errs.push_back(std::move(e));
  return errs;
}

void FakeKubeApi::store(const std::string& ns, json obj, const std::string& type) {
  obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
  const std::string name = obj["metadata"]["name"];
  if (type == "DELETED") {
    objects_[ns].erase(name);
    pods_[ns].erase(name);
  } else {
    objects_[ns][name] = obj;
  }
  events_.push_back({rv_, ns, type, obj});
  cv_.notify_all();
  if (kubelet_) kubelet_->observe(ns, name, type, obj);
}

void FakeKubeApi::reconcile(const std::string& ns, const std::string& name) {
  auto it = objects_[ns].find(name);
  if (it == objects_[ns].end()) return;
  json obj = it->second;
  bool running = sandbox_wants_running(obj);
  auto& pods = pods_[ns];
  // With the kubelet a new pod is Pending until its container really runs.
  json state = kubelet_ ? json{{"waiting", {{"reason", "ContainerCreating"}}}} : json{{"running", json::object()}};
  json first_status = {{"phase", kubelet_ ? "Pending" : "Running"},
                       {"containerStatuses", json::array({{{"name", "agent"}, {"state", state}}})}};
  // A new pod when it should run and has none (or only one being deleted).
  if (running && (!pods.count(name) || pods[name]["metadata"].contains("deletionTimestamp")))
    pods[name] = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}, {"namespace", ns}}}, {"status", first_status}};
  if (!running && pods.count(name)) {
    // As a cluster does: with a kubelet the pod is Terminating until its container has stopped
    // (the kubelet then removes it); without one it goes at once.
    if (kubelet_) pods[name]["metadata"]["deletionTimestamp"] = now_rfc3339();
    else pods.erase(name);
  }
  bool ended = running && pods[name]["status"].value("phase", "") != "Running";
  std::string ready = running && !ended ? "True" : "False";
  std::string reason = !running ? "SandboxSuspended" : ended ? "DependenciesNotReady" : "DependenciesReady";
  std::string message = ended ? "Pod exists with phase: " + pods[name]["status"].value("phase", "") : "";
  json cond = {{"type", "Ready"}, {"status", ready}, {"reason", reason}, {"message", message},
               {"lastTransitionTime", now_rfc3339()}, {"observedGeneration", obj["metadata"].value("generation", 1)}};
  json status = {{"conditions", {cond}}, {"service", name}, {"serviceFQDN", name + "." + ns + ".svc.cluster.local"}};
  if (version_of(obj) == "v1alpha1") {
    status["replicas"] = running ? 1 : 0;
    status["selector"] = "agents.x-k8s.io/sandbox-name-hash=" + name;
  }
  if (obj.contains("status") && obj["status"].contains("conditions") && obj["status"]["conditions"].size() == 1 &&
      obj["status"]["conditions"][0]["status"] == ready && obj["status"]["conditions"][0]["reason"] == reason)
    return;  // nothing changed: no event
  obj["status"] = status;
  auto errs = crd_.validate(version_of(obj), obj);  // the fake checks its own status writes too
  if (!errs.empty()) throw Error(Code::kInternal, "fake controller wrote an invalid status: " + errs[0]);
  store(ns, obj, "MODIFIED");
}

void FakeKubeApi::serve() {
  auto& s = *server_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard lock(mu_);
      ++requests_[req.method + (req.has_param("watch") ? "?watch" : "")];
    }
    bool cert_ok = req.ssl && SSL_get0_peer_certificate(req.ssl) && SSL_get_verify_result(req.ssl) == X509_V_OK;
    if (req.get_header_value("Authorization") != "Bearer " + o_.token && !cert_ok) {
      ++unauthorized_;
      reply(res, 401, status_body(401, "Unauthorized", "Unauthorized"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  s.Get("/apis/agents.x-k8s.io", [this](const httplib::Request&, httplib::Response& res) {
    if (o_.versions.empty()) return reply(res, 404, status_body(404, "NotFound", "the server could not find the requested resource"));
    json versions = json::array();
    for (const auto& v : o_.versions) versions.push_back({{"groupVersion", "agents.x-k8s.io/" + v}, {"version", v}});
    reply(res, 200, {{"kind", "APIGroup"}, {"apiVersion", "v1"}, {"name", "agents.x-k8s.io"}, {"versions", versions},
                     {"preferredVersion", versions[0]}});
  });

  auto served = [this](const std::string& v) { return std::find(o_.versions.begin(), o_.versions.end(), v) != o_.versions.end(); };
  const std::string coll = R"(/apis/agents\.x-k8s\.io/([^/]+)/namespaces/([^/]+)/sandboxes)";

  s.Post(coll, [this, served](const httplib::Request& req, httplib::Response& res) {
    std::string version = req.matches[1], ns = req.matches[2];
    if (!served(version)) return reply(res, 404, status_body(404, "NotFound", "the server could not find the requested resource"));
    json obj = json::parse(req.body, nullptr, false);
    if (!obj.is_object()) return reply(res, 400, status_body(400, "BadRequest", "the body is not a JSON object"));
    std::string name = obj.contains("metadata") && obj["metadata"].is_object() ? obj["metadata"].value("name", "") : "";
    if (name.empty()) return reply(res, 422, status_body(422, "Invalid", "Sandbox.agents.x-k8s.io is invalid: metadata.name: Required value"));
    if (obj["metadata"].value("namespace", ns) != ns)
      return reply(res, 400, status_body(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"));
    if (version_of(obj) != version)
      return reply(res, 400, status_body(400, "BadRequest", "the API version in the data (" + obj.value("apiVersion", "") + ") does not match the expected API version (agents.x-k8s.io/" + version + ")"));
    obj.erase("status");  // the status subresource: a create cannot set it
    crd_.apply_defaults(version, obj);
    std::lock_guard lock(mu_);
    auto errs = check(obj);
    if (!errs.empty()) {
      std::string msg = "Sandbox.agents.x-k8s.io \"" + name + "\" is invalid: ";
      for (size_t i = 0; i < errs.size(); ++i) msg += (i ? ", " : "") + errs[i];
      rejections_.push_back(msg);
      return reply(res, 422, status_body(422, "Invalid", msg));
    }
    if (objects_[ns].count(name))
      return reply(res, 409, status_body(409, "AlreadyExists", "sandboxes.agents.x-k8s.io \"" + name + "\" already exists"));
    auto& m = obj["metadata"];
    m["namespace"] = ns;
    m["uid"] = random_hex(16);
    m["generation"] = 1;
    m["creationTimestamp"] = now_rfc3339();
    store(ns, obj, "ADDED");
    json created = objects_[ns][name];
    reconcile(ns, name);
    reply(res, 201, created);
  });

  s.Get(coll, [this, served](const httplib::Request& req, httplib::Response& res) {
    std::string version = req.matches[1], ns = req.matches[2];
    if (!served(version)) return reply(res, 404, status_body(404, "NotFound", "the server could not find the requested resource"));
    std::string selector = req.get_param_value("labelSelector");
    if (!req.has_param("watch")) {
      std::lock_guard lock(mu_);
      json items = json::array();
      for (const auto& [n, o] : objects_[ns])
        if (selector_matches(selector, o)) items.push_back(o);
      return reply(res, 200, {{"kind", "SandboxList"}, {"apiVersion", "agents.x-k8s.io/" + version},
                              {"metadata", {{"resourceVersion", std::to_string(rv_)}}}, {"items", items}});
    }
    // A watch: events after resourceVersion (or the current objects as ADDED when none), one
    // JSON object per line, until timeoutSeconds.
    std::string rv_text = req.get_param_value("resourceVersion");
    int timeout_s = req.has_param("timeoutSeconds") ? std::stoi(req.get_param_value("timeoutSeconds")) : 300;
    struct WatchState {
      uint64_t epoch = 0;
      uint64_t after = 0;
      std::vector<std::string> pending;
      std::chrono::steady_clock::time_point deadline;
    };
    auto st = std::make_shared<WatchState>();
    st->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    {
      std::lock_guard lock(mu_);
      st->epoch = watch_epoch_;
      if (rv_text.empty() || rv_text == "0") {
        st->after = rv_;
        for (const auto& [n, o] : objects_[ns])
          if (selector_matches(selector, o)) st->pending.push_back(json{{"type", "ADDED"}, {"object", o}}.dump() + "\n");
      } else {
        st->after = std::stoull(rv_text);
        if (st->after < compacted_)
          st->pending.push_back(json{{"type", "ERROR"},
                                     {"object", status_body(410, "Expired", "too old resource version: " + rv_text + " (" + std::to_string(compacted_) + ")")}}
                                    .dump() + "\n");
      }
    }
    res.set_chunked_content_provider("application/json", [this, st, ns, selector](size_t, httplib::DataSink& sink) {
      std::unique_lock lock(mu_);
      for (const auto& e : events_)
        if (e.rv > st->after && e.ns == ns) {
          st->after = e.rv;
          // An object that stops matching the selector leaves the watch as DELETED, as the API server does.
          if (selector_matches(selector, e.object)) st->pending.push_back(json{{"type", e.type}, {"object", e.object}}.dump() + "\n");
        }
      bool expired = !st->pending.empty() && st->pending.front().find("\"ERROR\"") != std::string::npos;
      auto out = std::move(st->pending);
      st->pending.clear();
      lock.unlock();
      for (const auto& line : out)
        if (!sink.write(line.data(), line.size())) return false;
      lock.lock();
      if (expired || stopping_ || st->epoch != watch_epoch_ || std::chrono::steady_clock::now() >= st->deadline) {
        lock.unlock();
        sink.done();
        return true;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      return sink.is_writable();
    });
  });

  const std::string one = coll + "/([^/]+)";
  s.Get(one, [this, served](const httplib::Request& req, httplib::Response& res) {
    std::string version = req.matches[1], ns = req.matches[2], name = req.matches[3];
    if (!served(version)) return reply(res, 404, status_body(404, "NotFound", "the server could not find the requested resource"));
    std::lock_guard lock(mu_);
    auto it = objects_[ns].find(name);
    if (it == objects_[ns].end())
      return reply(res, 404, status_body(404, "NotFound", "sandboxes.agents.x-k8s.io \"" + name + "\" not found"));
    reply(res, 200, it->second);
  });

  s.Patch(one, [this, served](const httplib::Request& req, httplib::Response& res) {
    std::string version = req.matches[1], ns = req.matches[2], name = req.matches[3];
    if (!served(version)) return reply(res, 404, status_body(404, "NotFound", "the server could not find the requested resource"));
    if (req.get_header_value("Content-Type") != "application/merge-patch+json")
      return reply(res, 415, status_body(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json"));
    json patch = json::parse(req.body, nullptr, false);
    if (!patch.is_object()) return reply(res, 400, status_body(400, "BadRequest", "the patch is not a JSON object"));
    std::lock_guard lock(mu_);
    auto it = objects_[ns].find(name);
    if (it == objects_[ns].end())
      return reply(res, 404, status_body(404, "NotFound", "sandboxes.agents.x-k8s.io \"" + name + "\" not found"));
    json obj = it->second;
    json before_spec = obj["spec"];
    merge_patch(obj, patch);
    obj["status"] = it->second.value("status", json::object());  // only the status subresource writes it
    obj["metadata"]["name"] = name;
    obj["metadata"]["namespace"] = ns;
    crd_.apply_defaults(version, obj);
    auto errs = check(obj);
    if (!errs.empty()) {
      std::string msg = "Sandbox.agents.x-k8s.io \"" + name + "\" is invalid: ";
      for (size_t i = 0; i < errs.size(); ++i) msg += (i ? ", " : "") + errs[i];
      rejections_.push_back(msg);
      return reply(res, 422, status_body(422, "Invalid", msg));
    }
    if (obj["spec"] != before_spec) obj["metadata"]["generation"] = obj["metadata"].value("generation", 1) + 1;
    store(ns, obj, "MODIFIED");
    reconcile(ns, name);
    reply(res, 200, objects_[ns][name]);
  });

  s.Delete(one, [this, served](const httplib::Request& req, httplib::Response& res) {
    std::string version = req.matches[1], ns = req.matches[2], name = req.matches[3];
    if (!served(version)) return reply(res, 404, status_body(404, "NotFound", "the server could not find the requested resource"));
    std::lock_guard lock(mu_);
    auto it = objects_[ns].find(name);
    if (it == objects_[ns].end())
      return reply(res, 404, status_body(404, "NotFound", "sandboxes.agents.x-k8s.io \"" + name + "\" not found"));
    json obj = it->second;
    store(ns, obj, "DELETED");
    reply(res, 200, obj);
  });

  s.Get(R"(/api/v1/namespaces/([^/]+)/pods/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    std::string ns = req.matches[1], name = req.matches[2];
    std::lock_guard lock(mu_);
    auto it = pods_[ns].find(name);
    if (it == pods_[ns].end()) return reply(res, 404, status_body(404, "NotFound", "pods \"" + name + "\" not found"));
    reply(res, 200, it->second);
  });
}

std::optional<json> FakeKubeApi::object(const std::string& ns, const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = objects_[ns].find(name);
  if (it == objects_[ns].end()) return std::nullopt;
  return it->second;
}

std::vector<json> FakeKubeApi::objects(const std::string& ns) {
  std::lock_guard lock(mu_);
  std::vector<json> out;
  for (const auto& [n, o] : objects_[ns]) out.push_back(o);
  return out;
}

std::vector<std::string> FakeKubeApi::rejections() {
  std::lock_guard lock(mu_);
  return rejections_;
}

int FakeKubeApi::requests(const std::string& method) {
  std::lock_guard lock(mu_);
  return requests_[method];
}

void FakeKubeApi::put_object(const std::string& ns, json obj) {
  std::lock_guard lock(mu_);
  obj["metadata"]["namespace"] = ns;
  crd_.apply_defaults(version_of(obj), obj);
  auto errs = check(obj);
  if (!errs.empty()) throw Error(Code::kInvalidArgument, "fake kube-apiserver: put_object: " + errs[0]);
  obj["metadata"]["uid"] = random_hex(16);
  obj["metadata"]["generation"] = 1;
  obj["metadata"]["creationTimestamp"] = now_rfc3339();
  std::string name = obj["metadata"]["name"];
  store(ns, obj, "ADDED");
  reconcile(ns, name);
}

bool FakeKubeApi::delete_object(const std::string& ns, const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = objects_[ns].find(name);
  if (it == objects_[ns].end()) return false;
  store(ns, it->second, "DELETED");
  return true;
}

void FakeKubeApi::terminate_pod(const std::string& ns, const std::string& name, int exit_code, const std::string& reason) {
  std::lock_guard lock(mu_);
  auto it = pods_[ns].find(name);
  if (it == pods_[ns].end()) throw Error(Code::kNotFound, "fake kube-apiserver: no pod " + ns + "/" + name);
  it->second["status"] = {{"phase", exit_code == 0 ? "Succeeded" : "Failed"},
                          {"containerStatuses",
                           {{{"name", "agent"}, {"state", {{"terminated", {{"exitCode", exit_code}, {"reason", reason}}}}}}}}};
  reconcile(ns, name);
}

void FakeKubeApi::drop_watches() {
  std::lock_guard lock(mu_);
  ++watch_epoch_;
  cv_.notify_all();
}

void FakeKubeApi::compact() {
  std::lock_guard lock(mu_);
  // Other objects of the cluster moved on too: every resourceVersion seen so far is now too old.
  compacted_ = ++rv_;
  events_.clear();
}

}  // namespace bulwark::testing
