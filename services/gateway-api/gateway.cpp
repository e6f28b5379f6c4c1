#include "services/gateway-api/gateway.h"

#include <spdlog/spdlog.h>

#include "services/gateway-api/authz.h"
#include "services/gateway-api/gateway_metrics.h"
#include "services/gateway-api/http_api.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::gateway {

v1::PlaceReply BusControlPlane::place(const v1::PlaceRequest& req) {
  try {
    return bus_.request<v1::PlaceReply>(subjects::kPlace, req, o_.place_timeout);
  } catch (const NoResponders&) {
    throw Error(Code::kUnavailable, "no scheduler is running: start bulwark-scheduler (scripts/up starts one)");
  }
}

void BusControlPlane::delete_workload(const std::string& driver_id, const std::string& sandbox_id) {
  v1::DriverDeleteRequest req;
  req.set_sandbox_id(sandbox_id);
  try {
    bus_.request<v1::DriverDeleteReply>(subjects::driver_op(driver_id, "delete"), req, o_.driver_timeout);
  } catch (const NoResponders&) {
    throw DriverAway(driver_id);
  }
}

void BusControlPlane::stop_workload(const std::string& driver_id, const std::string& sandbox_id,
                                    std::chrono::milliseconds grace) {
  v1::DriverStopRequest req;
  req.set_sandbox_id(sandbox_id);
  req.set_grace_ms(static_cast<uint32_t>(grace.count()));
  try {
    auto r = bus_.request<v1::DriverStopReply>(subjects::driver_op(driver_id, "stop"), req, o_.driver_timeout + grace);
    if (!r.existed())
      throw Error(Code::kNotFound, "driver " + driver_id + " has no workload for sandbox " + sandbox_id, "sandbox_id");
  } catch (const NoResponders&) {
    throw DriverAway(driver_id);
  }
}

void BusControlPlane::start_workload(const std::string& driver_id, const std::string& sandbox_id) {
  v1::DriverStartRequest req;
  req.set_sandbox_id(sandbox_id);
  try {
    bus_.request<v1::DriverStartReply>(subjects::driver_op(driver_id, "start"), req, o_.driver_timeout);
  } catch (const NoResponders&) {
    throw DriverAway(driver_id);
  }
}

template <class Reply>
Reply BusControlPlane::policy_request(const std::string& op, const google::protobuf::Message& req,
                                      std::chrono::milliseconds wait) {
  try {
    // A --wait request may take as long as it asked for, plus the service's own work.
    return bus_.request<Reply>(subjects::policy_op(op), req, o_.driver_timeout + wait);
  } catch (const NoResponders&) {
    throw Error(Code::kUnavailable, "no policy-service is running: start bulwark-policy-service (scripts/up starts one)");
  }
}

v1::PolicyWriteReply BusControlPlane::policy_set(const v1::PolicySetRequest& req) {
  return policy_request<v1::PolicyWriteReply>("set", req, std::chrono::milliseconds(req.wait_ms()));
}
v1::PolicyWriteReply BusControlPlane::policy_update(const v1::PolicyUpdateRequest& req) {
  return policy_request<v1::PolicyWriteReply>("update", req, std::chrono::milliseconds(req.wait_ms()));
}
v1::PolicyRecord BusControlPlane::policy_get(const v1::PolicyGetRequest& req) {
  return policy_request<v1::PolicyRecord>("get", req, {});
}
v1::PolicyListReply BusControlPlane::policy_list(const v1::PolicyListRequest& req) {
  return policy_request<v1::PolicyListReply>("list", req, {});
}
v1::PolicyValidateReply BusControlPlane::policy_validate(const v1::PolicyValidateRequest& req) {
  return policy_request<v1::PolicyValidateReply>("validate", req, {});
}

v1::HealthReply BusHealthProbe::health(const std::string& service, std::chrono::milliseconds timeout) {
  return bus_.request<v1::HealthReply>(subjects::health(service), v1::HealthRequest(), timeout);
}

std::vector<std::string> KvRoutePublisher::keys() {
  std::vector<std::string> out;
  for (auto& e : kv_.values(">")) out.push_back(std::move(e.key));
  return out;
}

namespace {
// Routers drop what they cached of a provider that changed.
void announce_change(Bus& bus, const std::string& name) {
  v1::ProviderResolveRequest r;
  r.set_name(name);
  try {
    bus.publish(subjects::kProviderChanged, r);
  } catch (const std::exception& e) {
    spdlog::warn("cannot announce the change of provider {}: {}", name, e.what());
  }
}
}  // namespace

template <class Req, class Rep>
Subscription Gateway::serve_on_worker(const std::string& subject, std::function<Rep(const Msg&, const Req&)> fn) {
  return bus_.queue_subscribe(subject, subjects::kGatewayQueue, [this, subject, fn](Msg& m) {
    auto owned = std::make_shared<Msg>(std::move(m));
    nats_work_.post([this, subject, fn, owned] {
      bus_.reply_with(*owned, [&] {
        Req req;
        if (!req.ParseFromArray(owned->data().data(), static_cast<int>(owned->data().size())))
          throw Error(Code::kInvalidArgument, "request on " + subject + " is not a valid " + req.GetTypeName());
        bus_.respond(*owned, fn(*owned, req));
      });
    });
  });
}

Gateway::Gateway(Bus& bus, GatewayOptions o)
    : o_(std::move(o)),
      bus_(bus),
      store_(o_.db_path),
      tokens_(store_),
      audit_(store_),
      box_(SecretBox::load(o_.provider_key_file.empty() ? default_key_file(o_.db_path) : o_.provider_key_file)),
      routes_kv_(bus.key_value({.bucket = subjects::kInferenceRoutesBucket,
                                .description = "Bulwark: inference route tables, key global or sandbox.<sandbox_id>",
                                .history = 1,
                                .replicas = o_.kv_replicas})),
      providers_(store_, box_, [&bus](const std::string& name) { announce_change(bus, name); }),
      inference_(store_, routes_kv_),
      cp_(bus, o_),
      sandboxes_(store_, cp_, o_.defaults),
      probe_(bus),
      status_(store_, probe_, [&bus] { return bus.connected(); }, o_.instance_id),
      nats_work_(2, "gateway-nats"),
      api_(ApiDeps{sandboxes_, providers_, inference_, store_, &status_, [&bus] { return bus.connected(); }, o_.limits,
                   o_.auth ? &tokens_ : nullptr, &audit_, &exec_, &proposals_}) {
  if (o_.auth) {
    std::string file = o_.bootstrap_token_file.empty() ? default_admin_token_file(o_.db_path) : o_.bootstrap_token_file;
    if (!tokens_.bootstrap(file)) spdlog::info("REST API: API tokens required (the first admin token went to {} when the database was new)", file);
  } else {
    spdlog::critical("REST API: AUTHENTICATION IS OFF (--auth none): anyone who reaches http://{}:{} is admin. Local development "
                     "only; never on a shared host or network",
                     o_.http_addr, o_.http_port);
  }
  providers_.reseal();
  inference_.sync();  // SQLite is the truth: a wiped or stale KV is repaired here
  sandboxes_.on_removed([this](const std::string& id) {
    inference_.drop_sandbox(id);
    proposals_.drop_sandbox(id);
  });
  sandbox_metrics_ = watch_sandboxes(store_);  // bulwark_sandboxes{phase}, read at each scrape

  bus.ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, o_.stream_max_age);
  reports_ = bus.js_durable_subscribe(subjects::kSandboxStream, "gateway", subjects::kSandboxAll,
                                      [this](Msg& m) { on_stream(m); });
  sandboxes_.resume();

  resolve_ = serve_on_worker<v1::ProviderResolveRequest, v1::Provider>(
      subjects::kProviderResolve, [this](const Msg&, const v1::ProviderResolveRequest& r) { return providers_.resolve(r.name()); });
  env_ = serve_on_worker<v1::ProviderEnvRequest, v1::ProviderEnvReply>(
      subjects::kProviderEnvAll, [this](const Msg& m, const v1::ProviderEnvRequest& r) {
        std::string_view subj = m.subject();
        if (subj.substr(subj.rfind('.') + 1) != r.sandbox_id())
          throw Error(Code::kInvalidArgument,
                      "sandbox_id: '" + r.sandbox_id() + "' is not the sandbox of subject " + std::string(subj), "sandbox_id");
        return providers_.env(r.sandbox_id());
      });
  // The drivers /v1/status lists: every replica hears every heartbeat (no queue group).
  heartbeats_ = bus.subscribe(subjects::kDriverHeartbeat, [this](Msg& m) {
    v1::DriverHeartbeat hb;
    if (hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) status_.on_heartbeat(hb);
  });
  bus.flush();

  http_ = make_rest_server(o_.tls);
  api_.install(*http_);
  if (!http_->bind_to_port(o_.http_addr.c_str(), o_.http_port))
    throw Error(Code::kUnavailable, "cannot listen on " + o_.http_addr + ":" + std::to_string(o_.http_port) +
                                        " (in use? set --http-port or BULWARK_HTTP_PORT)");
  if (o_.connect_port != 0) {
    // connect: its own WebSocket listener, admitted like the REST route POST .../connect would be.
    int port = o_.connect_port < 0 ? o_.http_port + 1 : o_.connect_port;
    connect_ = std::make_unique<ConnectServer>(o_.http_addr, port, exec_, [this](const std::string& authorization, const std::string& ref) {
      if (o_.auth) {
        auto caller = tokens_.authenticate(authorization, to_millis(now_timestamp()));
        std::optional<std::string> owner;
        if (auto s = store_.find(ref)) owner = s->owner();
        // As a mutating call: a shell can change anything the sandbox can, so read-only tokens may not.
        auto d = authorize(caller, "POST", "/v1/sandboxes/{sandbox_id}/connect", owner, ref);
        if (!d.allowed) throw Error(d.code, d.reason, d.code == Code::kNotFound ? "sandbox_id" : "");
      }
      return sandboxes_.get(ref);
    }, o_.tls);
    spdlog::info("connect (WebSocket terminals) on {}://{}:{}/v1/sandboxes/{{sandbox_id}}/connect", o_.tls.enabled() ? "wss" : "ws",
                 o_.http_addr, connect_->port());
  }

  // Started last: a listener that cannot bind above fails the start before any thread runs.
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });
  spdlog::info("REST API on {}://{}:{}{}, database {}", o_.tls.enabled() ? "https" : "http", o_.http_addr, o_.http_port,
               o_.tls.client_ca_file.empty() ? "" : " (client certificates required)", o_.db_path);

  sweeper_ = std::thread([this] {
    std::unique_lock lock(mu_);
    int ticks = 0;
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
      lock.unlock();
      try {
        sandboxes_.sweep();
        if (ticks++ % 60 == 0) store_.prune_idempotent(to_millis(now_timestamp()) - kIdempotencyTtlMs);
      } catch (const std::exception& e) {
        spdlog::error("sweep failed: {}", e.what());
      }
      lock.lock();
    }
  });
}

void Gateway::on_stream(Msg& m) {
  std::string_view subj = m.subject();
  try {
    if (subj.ends_with(".state")) {
      v1::StateReport r;
      if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) || r.sandbox_id().empty())
        spdlog::warn("dropping malformed StateReport on {}", subj);
      else
        sandboxes_.on_report(r);
    } else if (subj.ends_with(".logs")) {
      v1::LogLine l;
      if (!l.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) || l.sandbox_id().empty())
        spdlog::warn("dropping malformed LogLine on {}", subj);
      else {
        sandboxes_.on_log(l, m.stream_seq());
        // A denial a new network policy entry would have allowed is proposed for approval.
        if (l.stream() == "denial" && l.has_denial() && store_.find(l.sandbox_id())) proposals_.on_denial(l.sandbox_id(), l.denial(), to_millis(now_timestamp()));
      }
    }
  } catch (const std::exception& e) {
    // Not acked: JetStream redelivers after AckWait, by which time the store may be back.
    spdlog::error("cannot apply {}: {}", subj, e.what());
    return;
  }
  m.ack();
}

void Gateway::stop() {
  if (http_) http_->stop();
  connect_.reset();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  nats_work_.shutdown();
  sandboxes_.shutdown();
}

Gateway::~Gateway() {
  stop();
  if (http_thread_.joinable()) http_thread_.join();
  if (sweeper_.joinable()) sweeper_.join();
}

}  // namespace bulwark::gateway
