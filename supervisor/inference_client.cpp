#include "supervisor/inference_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "bulwark/v1/inference.pb.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::supervisor {

using Clock = std::chrono::steady_clock;
using proxy::InferenceSink;

namespace {

constexpr auto kUnsubscribeWait = std::chrono::seconds(5);
constexpr char kNoRouter[] = "no privacy-router is running; start bulwark-privacy-router";

long long ms(std::chrono::milliseconds d) { return static_cast<long long>(d.count()); }

// A complete JSON error response through the sink (before any head was sent).
void answer_error(InferenceSink& sink, int status, std::string_view code, const std::string& message) {
  sink.head(status, {{"Content-Type", "application/json"}});
  sink.chunk(proxy::inference_error_body(code, message));
  sink.end("");
}

}  // namespace

struct InferenceClient::Core : std::enable_shared_from_this<Core> {
  struct Call {
    std::shared_ptr<InferenceSink> sink;
    uint64_t next_seq = 0;
    bool head = false;
    Clock::time_point deadline;
    // For the log only (never headers or bodies).
    std::string method, path, binary;
    Clock::time_point started;
  };

  Core(Bus& b, Options o) : bus(b), opts(std::move(o)) {}

  void start();
  void shutdown();
  void call(proxy::InferenceRequest req, std::shared_ptr<InferenceSink> sink);
  void on_message(Msg& m);
  void cancel(const std::string& id);
  // The client's thread: publishes queued calls and enforces the deadlines.
  void run();
  void publish(const std::string& id, const std::string& data);
  // Ends the call with error (a truncated body, or a 502 before the head) and forgets it. mu held.
  void finish(std::unordered_map<std::string, Call>::iterator it, const std::string& error);

  Bus& bus;
  const Options opts;
  std::string inbox;  // "<inbox prefix>.<unique>"; each call answers on inbox + "." + call_id
  NatsPtr<natsSubscription> sub;
  std::thread timer;

  mutable std::mutex mu;
  std::condition_variable cv;  // the timer's wake-ups, and the subscription's completion
  std::unordered_map<std::string, Call> calls;  // guarded by mu, like the rest below
  // Calls to publish: the proxy's event loop hands them over and never waits on NATS (a 4 MiB
  // publish can block until the socket takes it).
  std::deque<std::pair<std::string, std::string>> outbox;
  bool stopping = false;
  bool sub_done = false;
};

namespace {

void on_frame_msg(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) {
  Msg m(raw);
  try {
    static_cast<InferenceClient::Core*>(closure)->on_message(m);
  } catch (const std::exception& e) {
    spdlog::error("inference: handling a frame on {} failed: {}", m.subject(), e.what());
  }
}

// libnats calls this once the subscription is closed and its last callback has returned: only
// then may the Core the callbacks point at go.
void on_sub_complete(void* closure) {
  auto* core = static_cast<InferenceClient::Core*>(closure);
  std::lock_guard lock(core->mu);
  core->sub_done = true;
  core->cv.notify_all();  // under the lock: the waiter may free the Core as soon as it returns
}

}  // namespace

void InferenceClient::Core::start() {
  // Below the connection's inbox prefix: the only replies a sandbox's NATS credentials may read.
  inbox = bus.new_inbox();
  const std::string subject = inbox + ".*";
  natsSubscription* raw = nullptr;
  check_nats(natsConnection_Subscribe(&raw, bus.native_handle(), subject.c_str(), on_frame_msg, this),
             "subscribe to inference replies on " + subject);
  sub.reset(raw);
  check_nats(natsSubscription_SetOnCompleteCB(raw, on_sub_complete, this), "inference reply subscription");
  // A stream of chunks must not be dropped by a client-side pending limit (a drop would show as a
  // seq gap and cut the response): allow a deep backlog.
  natsSubscription_SetPendingLimits(raw, 65536, 256 * 1024 * 1024);
  timer = std::thread([this] { run(); });
}

void InferenceClient::Core::shutdown() {
  {
    std::lock_guard lock(mu);
    stopping = true;
    for (auto& [id, c] : calls) {
      if (c.head)
        c.sink->end("the supervisor is stopping");
      else
        answer_error(*c.sink, 503, "unavailable", "bulwark: the sandbox's supervisor is stopping");
    }
    calls.clear();
    outbox.clear();
    cv.notify_all();
  }
  if (timer.joinable()) timer.join();
  if (!sub) return;
  // Fails once the connection is closed; the subscription is closed (and completes) with it then.
  natsSubscription_Unsubscribe(sub.get());
  {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, kUnsubscribeWait, [&] { return sub_done; }))
      spdlog::warn("inference: the reply subscription did not complete within {} s",
                   std::chrono::duration_cast<std::chrono::seconds>(kUnsubscribeWait).count());
  }
  sub.reset();
}

void InferenceClient::Core::call(proxy::InferenceRequest req, std::shared_ptr<InferenceSink> sink) {
  const std::string id = random_hex(8);
  v1::InferenceCall m;
  m.set_sandbox_id(opts.sandbox_id);
  m.set_call_id(id);
  m.set_method(req.method);
  m.set_path(req.path);
  for (auto& h : req.headers) {
    auto* out = m.add_headers();
    out->set_name(std::move(h.name));
    out->set_value(std::move(h.value));
  }
  m.set_body(std::move(req.body));
  m.set_binary(req.binary);
  std::string data = m.SerializeAsString();
  const int64_t max = bus.max_payload();
  if (max > 0 && data.size() > static_cast<size_t>(max)) {
    // The proxy's size limit keeps bodies below this; many or huge headers can still tip it over.
    answer_error(*sink, 413, "payload_too_large",
                 "bulwark: the request is too large for one NATS message: limit " + std::to_string(max) + " bytes");
    return;
  }
  {
    std::lock_guard lock(mu);
    if (stopping) {
      answer_error(*sink, 503, "unavailable", "bulwark: the sandbox's supervisor is stopping");
      return;
    }
    Call c;
    c.sink = sink;
    c.started = Clock::now();
    c.deadline = c.started + opts.first_frame_timeout;
    c.method = req.method;
    c.path = req.path;
    c.binary = req.binary;
    calls.emplace(id, std::move(c));  // before publishing: the first frame may come back at once
    outbox.emplace_back(id, std::move(data));
    cv.notify_all();
  }
  // Outside the lock: a sink cancelled already runs this at once.
  sink->on_cancel([weak = weak_from_this(), id] {
    if (auto core = weak.lock()) core->cancel(id);
  });
  spdlog::debug("inference {}: {} {} from {}", id, req.method, req.path,
                req.binary.empty() ? "an unidentified program" : req.binary);
}

// On the client's thread, without the lock.
void InferenceClient::Core::publish(const std::string& id, const std::string& data) {
  try {
    bus.publish(subjects::inference_call(opts.sandbox_id), inbox + "." + id, data);
  } catch (const std::exception& e) {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    spdlog::warn("inference {}: cannot publish the call: {}", id, e.what());
    answer_error(*it->second.sink, 503, "unavailable", std::string("bulwark: cannot reach NATS: ") + e.what());
    calls.erase(it);
  }
}

void InferenceClient::Core::finish(std::unordered_map<std::string, Call>::iterator it, const std::string& error) {
  Call& c = it->second;
  spdlog::info("inference {}: {} {} from {} ended with an error after {} frames: {}", it->first, c.method, c.path,
               c.binary.empty() ? "an unidentified program" : c.binary, c.next_seq, error);
  c.sink->end(error);
  calls.erase(it);
}

void InferenceClient::Core::on_message(Msg& m) {
  std::string_view subject = m.subject();
  if (subject.size() <= inbox.size() + 1) return;
  const std::string id(subject.substr(inbox.size() + 1));
  std::lock_guard lock(mu);
  auto it = calls.find(id);
  if (it == calls.end()) return;  // finished, timed out or cancelled: a late frame
  Call& c = it->second;
  if (natsMsg_IsNoResponders(m.raw())) {
    spdlog::warn("inference {}: {}", id, kNoRouter);
    answer_error(*c.sink, 503, "unavailable", std::string("bulwark: ") + kNoRouter);
    calls.erase(it);
    return;
  }
  v1::InferenceFrame f;
  if (!f.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) {
    finish(it, "the privacy-router sent a malformed frame");
    return;
  }
  if (f.seq() != c.next_seq) {
    finish(it, "lost frames: expected frame " + std::to_string(c.next_seq) + ", got frame " + std::to_string(f.seq()));
    return;
  }
  ++c.next_seq;
  c.deadline = Clock::now() + opts.idle_timeout;  // the timer wakes at the old one and re-reads it
  switch (f.kind_case()) {
    case v1::InferenceFrame::kHead: {
      if (c.head) {
        finish(it, "the privacy-router sent a second response head");
        return;
      }
      c.head = true;
      std::vector<proxy::HeaderField> headers;
      headers.reserve(static_cast<size_t>(f.head().headers_size()));
      for (const auto& h : f.head().headers()) headers.push_back({h.name(), h.value()});
      c.sink->head(f.head().status(), std::move(headers));
      return;
    }
    case v1::InferenceFrame::kChunk:
      if (!c.head) {
        finish(it, "the privacy-router sent body bytes before the response head");
        return;
      }
      c.sink->chunk(std::move(*f.mutable_chunk()));
      return;
    case v1::InferenceFrame::kEnd:
      if (!f.end().error().empty()) {
        finish(it, f.end().error());
        return;
      }
      spdlog::debug("inference {}: done after {} frames, {:.0f} ms", id, c.next_seq,
                    std::chrono::duration<double, std::milli>(Clock::now() - c.started).count());
      c.sink->end("");
      calls.erase(it);
      return;
    case v1::InferenceFrame::KIND_NOT_SET:
      break;
  }
  finish(it, "the privacy-router sent an empty frame");
}

void InferenceClient::Core::cancel(const std::string& id) {
  std::lock_guard lock(mu);
  auto it = calls.find(id);
  if (it == calls.end()) return;
  // The router's frames for it are dropped as they come (nothing in the protocol stops it).
  spdlog::debug("inference {}: cancelled, the client is gone", id);
  calls.erase(it);
}

void InferenceClient::Core::run() {
  std::unique_lock lock(mu);
  while (!stopping) {
    while (!outbox.empty() && !stopping) {
      auto [id, data] = std::move(outbox.front());
      outbox.pop_front();
      if (!calls.count(id)) continue;  // cancelled before it went out
      lock.unlock();
      publish(id, data);
      lock.lock();
    }
    if (stopping) break;
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (auto it = calls.begin(); it != calls.end();) {
      Call& c = it->second;
      if (c.deadline > now) {
        next = std::min(next, c.deadline);
        ++it;
        continue;
      }
      if (!c.head) {
        spdlog::warn("inference {}: no answer from the privacy-router within {} ms", it->first,
                     ms(opts.first_frame_timeout));
        answer_error(*c.sink, 504, "gateway_timeout",
                     "bulwark: the privacy-router did not answer within " + std::to_string(ms(opts.first_frame_timeout)) +
                         " ms");
        it = calls.erase(it);
      } else {
        auto next_it = std::next(it);
        finish(it, "no frame from the privacy-router for " + std::to_string(ms(opts.idle_timeout)) + " ms");
        it = next_it;
      }
    }
    if (!outbox.empty()) continue;
    if (next == Clock::time_point::max())
      cv.wait(lock);
    else
      cv.wait_until(lock, next);
  }
}

InferenceClient::InferenceClient(Bus& bus, Options o) : core_(std::make_shared<Core>(bus, std::move(o))) {
  core_->start();
}

InferenceClient::~InferenceClient() { core_->shutdown(); }

void InferenceClient::call(proxy::InferenceRequest req, std::shared_ptr<proxy::InferenceSink> sink) {
  core_->call(std::move(req), std::move(sink));
}

proxy::InferenceFn InferenceClient::handler() {
  return [weak = std::weak_ptr<Core>(core_)](proxy::InferenceRequest req, std::shared_ptr<InferenceSink> sink) {
    if (auto core = weak.lock()) {
      core->call(std::move(req), std::move(sink));
      return;
    }
    answer_error(*sink, 503, "unavailable", "bulwark: the sandbox's supervisor is stopping");
  };
}

size_t InferenceClient::max_request_bytes() const {
  int64_t max = core_->bus.max_payload();
  return max > static_cast<int64_t>(kEnvelopeBytes) ? static_cast<size_t>(max) - kEnvelopeBytes : 0;
}

size_t InferenceClient::active_calls() const {
  std::lock_guard lock(core_->mu);
  return core_->calls.size();
}

}  // namespace bulwark::supervisor
