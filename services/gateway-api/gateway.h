#pragma once
// gateway-api wired together: SQLite store, the sandbox operations, the REST server, the
// JetStream consumer of sandbox reports and logs, and the sweeper that times out stuck steps.
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "services/gateway-api/sandboxes.h"
#include "services/gateway-api/store.h"
#include "shared/bus.h"
#include "shared/service.h"

namespace bulwark::gateway {

struct GatewayOptions {
  std::string http_addr = "127.0.0.1";
  int http_port = 8080;
  std::string db_path = "bulwark-gateway.db";
  SandboxDefaults defaults;
  std::chrono::milliseconds place_timeout{60000};
  std::chrono::milliseconds driver_timeout{30000};
  std::chrono::seconds stream_max_age{7 * 24 * 3600};
};

// ControlPlane over NATS: place on the scheduler queue group, delete on the driver's own subject.
class BusControlPlane : public ControlPlane {
 public:
  BusControlPlane(Bus& bus, const GatewayOptions& o) : bus_(bus), o_(o) {}
  v1::PlaceReply place(const v1::PlaceRequest& req) override;
  void delete_workload(const std::string& driver_id, const std::string& sandbox_id) override;
  v1::PolicyWriteReply policy_set(const v1::PolicySetRequest& req) override;
  v1::PolicyWriteReply policy_update(const v1::PolicyUpdateRequest& req) override;
  v1::PolicyRecord policy_get(const v1::PolicyGetRequest& req) override;
  v1::PolicyListReply policy_list(const v1::PolicyListRequest& req) override;
  v1::PolicyValidateReply policy_validate(const v1::PolicyValidateRequest& req) override;

 private:
  template <class Reply>
  Reply policy_request(const std::string& op, const google::protobuf::Message& req, std::chrono::milliseconds wait);
  Bus& bus_;
  const GatewayOptions& o_;
};

class Gateway : public Component {
 public:
  Gateway(Bus& bus, GatewayOptions o);
  ~Gateway() override;
  void stop() override;

 private:
  void on_stream(Msg& m);

  GatewayOptions o_;
  Store store_;
  BusControlPlane cp_;
  Sandboxes sandboxes_;
  httplib::Server http_;
  std::thread http_thread_;
  std::thread sweeper_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Subscription reports_;
};

}  // namespace bulwark::gateway
