#pragma once
// Inference route tables: one global, one per sandbox (InferenceConfig). SQLite is the source of
// truth; every stored table is also published, as the serialized InferenceConfig, under
// subjects::inference_routes_key(sandbox_id) for the privacy-routers (JetStream KV in production,
// through RoutePublisher so that this is tested without NATS).
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/v1/inference.pb.h"
#include "services/gateway-api/store.h"

namespace bulwark::gateway {

// Where the routers read route tables. Errors are thrown as bulwark::Error.
class RoutePublisher {
 public:
  virtual ~RoutePublisher() = default;
  virtual void put(const std::string& key, const std::string& value) = 0;
  virtual void erase(const std::string& key) = 0;
  virtual std::vector<std::string> keys() = 0;  // every key that has a value
};

// Checks a table and fills its defaults (privacy "any" for the table and each backend), each error
// naming its field (routes[0].backends[1].provider). find_provider returns the stored provider or
// nullopt. Pure.
void normalize_inference(v1::InferenceConfig& c,
                         const std::function<std::optional<ProviderRow>(const std::string&)>& find_provider);

class InferenceRoutes {
 public:
  InferenceRoutes(Store& store, RoutePublisher& pub);

  // sandbox: "" for the global table (unless the body's sandbox_id names one), else a sandbox id or
  // name. Publishes first: when that fails (Error kUnavailable) nothing is stored.
  v1::InferenceConfig put(const std::string& sandbox, v1::InferenceConfig c);
  v1::InferenceConfig get(const std::string& sandbox);  // Error(kNotFound) when the scope has none
  void remove(const std::string& sandbox);               // Error(kNotFound) when the scope has none

  // The sandbox is being deleted: its table goes (from KV best effort; sync() finishes the job).
  void drop_sandbox(const std::string& sandbox_id);
  // At start: re-publish every stored table (a wiped NATS is repaired), drop those of deleted
  // sandboxes, and erase published keys that have no stored table.
  void sync();

 private:
  // "" or the sandbox_id that ref names; field is what to blame.
  std::string scope_of(const std::string& ref, bool for_write, const std::string& field);
  void publish(const std::string& what, const std::function<void()>& fn);

  Store& store_;
  RoutePublisher& pub_;
  std::mutex mu_;  // one write at a time: KV and SQLite see the same order
};

}  // namespace bulwark::gateway
