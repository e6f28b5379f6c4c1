#pragma once
// Fakes for the gateway's unit tests: a scripted control plane (no scheduler, driver or
// policy-service) and an in-memory route publisher (no NATS).
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "services/gateway-api/inference.h"
#include "services/gateway-api/sandboxes.h"
#include "services/gateway-api/status.h"
#include "shared/error.h"

namespace bulwark::gateway::fakes {

struct ScriptedControlPlane : ControlPlane {
  std::mutex mu;
  std::optional<Error> place_error;
  std::vector<std::string> deleted;
  v1::PlaceReply place(const v1::PlaceRequest& req) override {
    std::lock_guard l(mu);
    if (place_error) throw *place_error;
    v1::PlaceReply r;
    r.set_driver_id("podman-test");
    r.set_workload_id("w-" + req.sandbox_id());
    return r;
  }
  void delete_workload(const std::string& driver, const std::string& id) override {
    std::lock_guard l(mu);
    deleted.push_back(driver + "/" + id);
  }
  std::vector<std::string> stopped, started;  // "<driver>/<sandbox_id>"
  void stop_workload(const std::string& driver, const std::string& id, std::chrono::milliseconds) override {
    std::lock_guard l(mu);
    stopped.push_back(driver + "/" + id);
  }
  void start_workload(const std::string& driver, const std::string& id) override {
    std::lock_guard l(mu);
    started.push_back(driver + "/" + id);
  }
  std::vector<std::string> policies;  // "<sandbox_id>: <yaml>" stored before placement
  v1::PolicyWriteReply policy_set(const v1::PolicySetRequest& req) override {
    std::lock_guard l(mu);
    policies.push_back(req.sandbox_id() + ": " + req.yaml());
    return {};
  }
  v1::PolicyWriteReply policy_update(const v1::PolicyUpdateRequest&) override { return {}; }
  v1::PolicyRecord policy_get(const v1::PolicyGetRequest&) override { return {}; }
  v1::PolicyListReply policy_list(const v1::PolicyListRequest&) override { return {}; }
  v1::PolicyValidateReply policy_validate(const v1::PolicyValidateRequest&) override { return {}; }
};

struct MapPublisher : RoutePublisher {
  std::mutex mu;
  std::map<std::string, std::string> kv;
  std::optional<Error> fail;  // every call throws it while set
  void put(const std::string& key, const std::string& value) override {
    std::lock_guard l(mu);
    if (fail) throw *fail;
    kv[key] = value;
  }
  void erase(const std::string& key) override {
    std::lock_guard l(mu);
    if (fail) throw *fail;
    kv.erase(key);
  }
  std::vector<std::string> keys() override {
    std::lock_guard l(mu);
    if (fail) throw *fail;
    std::vector<std::string> out;
    for (const auto& [k, v] : kv) out.push_back(k);
    return out;
  }
  std::optional<v1::InferenceConfig> config(const std::string& key) {
    std::lock_guard l(mu);
    auto it = kv.find(key);
    if (it == kv.end()) return std::nullopt;
    v1::InferenceConfig c;
    c.ParseFromString(it->second);
    return c;
  }
};

// Services' health without NATS: those in `live` answer, those in `silent` time out, the others
// are not running.
struct FakeProbe : HealthProbe {
  std::mutex mu;
  std::set<std::string> live = {"gateway-api"};
  std::set<std::string> silent;
  v1::HealthReply health(const std::string& service, std::chrono::milliseconds timeout) override {
    std::lock_guard l(mu);
    if (silent.count(service)) throw Error(Code::kTimeout, "no reply within " + std::to_string(timeout.count()) + " ms");
    if (!live.count(service)) throw NoResponders("bulwark." + service + ".health");
    v1::HealthReply r;
    r.set_service(service);
    r.set_instance_id(service + "-1");
    r.set_version("0.1.0");
    r.set_status("ok");
    r.set_uptime_ms(1234);
    return r;
  }
};

}  // namespace bulwark::gateway::fakes
