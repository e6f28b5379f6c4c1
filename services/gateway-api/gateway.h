#pragma once
// gateway-api wired together: SQLite store, the sandbox, provider and inference-route operations,
// the REST server, the JetStream consumer of sandbox reports and logs, the provider requests of
// routers and supervisors, and the sweeper that times out stuck steps.
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "services/gateway-api/exec_connect.h"
#include "services/gateway-api/http_api.h"
#include "services/gateway-api/proposals.h"
#include "services/gateway-api/inference.h"
#include "services/gateway-api/providers.h"
#include "services/gateway-api/sandboxes.h"
#include "services/gateway-api/secret_box.h"
#include "services/gateway-api/status.h"
#include "services/gateway-api/store.h"
#include "shared/bus.h"
#include "shared/metrics.h"
#include "shared/service.h"
#include "shared/work_queue.h"

namespace bulwark::gateway {

struct GatewayOptions {
  std::string http_addr = "127.0.0.1";
  int http_port = 8080;
  std::string db_path = "bulwark-gateway.db";
  SandboxDefaults defaults;
  std::chrono::milliseconds place_timeout{60000};
  std::chrono::milliseconds driver_timeout{30000};
  std::chrono::seconds stream_max_age{7 * 24 * 3600};
  std::string provider_key_file;  // "" = provider.key beside db_path
  int kv_replicas = 1;            // of the inference_routes bucket; > 1 only on a NATS cluster
  RateLimitOptions limits;        // per client address, on every route but /healthz
  std::string instance_id;        // this process's, shown by /v1/status
  bool auth = true;               // false: --auth none, every request is admin (local development only)
  int connect_port = -1;          // the WebSocket connect listener (exec_connect.h): -1 = http_port + 1, 0 = off
  std::string bootstrap_token_file;  // "" = admin.token beside db_path; written on first start only
  ServerTls tls;                     // REST and connect over TLS (mTLS with a client CA); off by default
};

// HealthProbe over NATS: a request on bulwark.<service>.health.
class BusHealthProbe : public HealthProbe {
 public:
  explicit BusHealthProbe(Bus& bus) : bus_(bus) {}
  v1::HealthReply health(const std::string& service, std::chrono::milliseconds timeout) override;

 private:
  Bus& bus_;
};

// Route tables to the routers: JetStream KV bucket inference_routes.
class KvRoutePublisher : public RoutePublisher {
 public:
  explicit KvRoutePublisher(KvBucket kv) : kv_(std::move(kv)) {}
  void put(const std::string& key, const std::string& value) override { kv_.put(key, value); }
  void erase(const std::string& key) override { kv_.erase(key); }
  std::vector<std::string> keys() override;

 private:
  KvBucket kv_;
};

// ControlPlane over NATS: place on the scheduler queue group, delete on the driver's own subject.
class BusControlPlane : public ControlPlane {
 public:
  BusControlPlane(Bus& bus, const GatewayOptions& o) : bus_(bus), o_(o) {}
  v1::PlaceReply place(const v1::PlaceRequest& req) override;
  void delete_workload(const std::string& driver_id, const std::string& sandbox_id) override;
  void stop_workload(const std::string& driver_id, const std::string& sandbox_id, std::chrono::milliseconds grace) override;
  void start_workload(const std::string& driver_id, const std::string& sandbox_id) override;
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
  std::string not_ready() const override { return http_ && http_->is_running() ? "" : "the REST listener is not serving yet"; }

 private:
  void on_stream(Msg& m);
  // A request served on a worker (the store may block), replied to with fn's result or its error.
  template <class Req, class Rep>
  Subscription serve_on_worker(const std::string& subject, std::function<Rep(const Msg&, const Req&)> fn);

  GatewayOptions o_;
  Bus& bus_;
  Store store_;
  Tokens tokens_;
  AuditLog audit_;
  SecretBox box_;
  KvRoutePublisher routes_kv_;
  Providers providers_;
  InferenceRoutes inference_;
  BusControlPlane cp_;
  Sandboxes sandboxes_;
  metrics::Registry::Collector sandbox_metrics_;  // reads store_: after it, so it goes first
  BusHealthProbe probe_;
  StatusBoard status_;
  WorkQueue nats_work_;
  ExecService exec_{bus_};  // before api_, which uses it
  Proposals proposals_{o_.db_path};  // the approval flow: before api_, which uses it
  RestApi api_;
  std::unique_ptr<httplib::Server> http_;  // an SSLServer with --tls (tls.h)
  std::thread http_thread_;
  std::unique_ptr<ConnectServer> connect_;  // interactive terminals (docs/exec.md)
  std::thread sweeper_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Subscription reports_;
  Subscription resolve_;
  Subscription env_;
  Subscription heartbeats_;
};

}  // namespace bulwark::gateway
