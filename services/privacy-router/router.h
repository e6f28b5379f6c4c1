#pragma once
// privacy-router's NATS side: inference calls from supervisors (bulwark.inference.call.<sandbox_id>,
// queue group privacy-router) answered with InferenceFrames on the call's reply subject; route
// tables watched in KV `inference_routes`; providers resolved through gateway-api and cached;
// one audit LogLine per call on the sandbox's logs subject. Calls run on a bounded pool so that
// libnats' delivery thread never waits on a backend.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "bulwark/v1/inference.pb.h"
#include "services/privacy-router/api.h"
#include "services/privacy-router/backend.h"
#include "services/privacy-router/provider_cache.h"
#include "services/privacy-router/routes.h"
#include "shared/bus.h"
#include "shared/service.h"
#include "shared/work_queue.h"

namespace bulwark::privacy_router {

inline constexpr size_t kMaxFrameBytes = 64 * 1024;

// One response as InferenceFrames: seq from 0, a head, chunks of at most kMaxFrameBytes, an end.
// A sink that throws breaks the writer: later frames are not sent (the receiver sees the gap).
class FrameWriter {
 public:
  using Sink = std::function<void(const v1::InferenceFrame&)>;
  explicit FrameWriter(Sink sink) : sink_(std::move(sink)) {}
  bool head(int status, const Headers& headers);
  bool chunk(std::string_view data);
  bool end(const std::string& error);
  bool head_sent() const { return head_sent_; }
  bool ended() const { return ended_; }
  uint64_t body_bytes() const { return body_bytes_; }
  std::chrono::steady_clock::time_point head_at() const { return head_at_; }

 private:
  bool send(v1::InferenceFrame& f);
  Sink sink_;
  uint64_t seq_ = 0;
  uint64_t body_bytes_ = 0;
  bool head_sent_ = false;
  std::chrono::steady_clock::time_point head_at_;
  bool ended_ = false;
  bool broken_ = false;
};

// A complete router-made response: head with e.status, one chunk with the error body, end.
void answer_error(FrameWriter& w, ApiStyle style, const CallError& e);

// The audit line: "inference POST /v1/chat/completions model=m -> provider (backend model) 200 12 B in 3.1 ms".
std::string event_line(const v1::InferenceEvent& ev);

struct RouterOptions {
  int max_concurrent = 64;
  uint32_t max_request_bytes = 4u << 20;
  std::chrono::milliseconds provider_ttl{60000};
  std::chrono::milliseconds resolve_timeout{5000};  // one bulwark.provider.resolve request
  std::chrono::milliseconds shutdown_grace{10000};  // calls in flight may finish this long on stop
  std::chrono::milliseconds initial_routes_wait{5000};  // at start, to have the tables before serving
  ForwardOptions forward;
};

class Router : public Component {
 public:
  Router(Bus& bus, RouterOptions o);
  ~Router() override;
  void stop() override;

 private:
  struct Call;
  void on_call(Msg& m);
  void process(Call& c);
  void route_and_forward(Call& c, FrameWriter& w);
  // The request for one backend, or nullopt with the reason added to c's attempts.
  std::optional<UpstreamRequest> prepare(Call& c, const v1::InferenceBackend& b);
  void finish(Call& c, const FrameWriter& w);
  void publish_event(const std::string& sandbox_id, v1::InferenceEvent ev);

  void watch_routes();
  std::shared_ptr<const RouteTable> table() const;
  void apply(RouteTable& t, const KvEntry& e) const;

  Bus& bus_;
  RouterOptions o_;
  ProviderCache providers_;
  Forwarder forwarder_;
  KvBucket routes_;
  std::optional<KvWatcher> watch_;  // made in the constructor, then read only by watcher_
  mutable std::mutex table_mu_;
  std::shared_ptr<const RouteTable> table_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<int> events_pending_{0};
  std::atomic<int64_t> events_paused_until_{0};  // steady ticks: after a failed store, skip for a while
  std::atomic<uint64_t> events_dropped_{0};
  WorkQueue events_;  // audit events: a slow JetStream never delays a response
  WorkQueue calls_;
  std::thread watcher_;
  Subscription changed_;
  Subscription calls_sub_;  // last: unsubscribed first
};

}  // namespace bulwark::privacy_router
