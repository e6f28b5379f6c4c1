#include "services/gateway-api/watch_http.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <set>

#include "services/gateway-api/watch.h"
#include "shared/error.h"
#include "shared/metrics.h"
#include "shared/proto_json.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long one provider call waits for events: also how soon a gone client is noticed (httplib
// checks the socket between calls).
constexpr auto kPoll = 500ms;
// After the sandbox ended, its last log lines may still be on the way (logs and reports travel
// separately): a follow ends once none came for this long.
constexpr auto kDrain = 1500ms;
// SSE comments on a quiet stream, so proxies keep it open and a gone client is noticed by a write.
constexpr auto kKeepAlive = 15s;

// Each open stream holds one of the HTTP server's threads (kHttpThreads, watch_http.h) for as long
// as it lasts: past this many, new ones are refused so that ordinary requests still get a thread.
std::atomic<int> g_open{0};
metrics::Gauge& open_gauge() {
  static auto& g = metrics::registry().gauge("bulwark_gateway_open_streams",
                                             "Open live streams (GET /v1/events, logs?follow=true).");
  return g.get();
}
// Held by a stream's provider: released when httplib drops the provider (the stream ended, the
// client went, or the server stopped).
class StreamSlot {
 public:
  StreamSlot() {
    if (++g_open > kMaxStreams) {
      --g_open;
      throw Error(Code::kUnavailable, "the gateway already serves " + std::to_string(kMaxStreams) +
                                          " live streams (events, logs follow); close one or retry later");
    }
    open_gauge().set(g_open);
  }
  ~StreamSlot() { open_gauge().set(--g_open); }
  StreamSlot(const StreamSlot&) = delete;
  StreamSlot& operator=(const StreamSlot&) = delete;
};

bool write(httplib::DataSink& sink, const std::string& s) { return sink.is_writable() && sink.write(s.data(), s.size()); }

struct FollowState {
  StreamSlot slot;
  std::shared_ptr<Watchers::Subscription> sub;
  std::vector<v1::LogLine> backlog;
  int64_t backlog_last_ms = 0;
  std::set<std::string> backlog_at_last;  // the backlog's lines stamped backlog_last_ms, as JSON
  bool ended = false;
  Clock::time_point quiet_since = Clock::now();
};
}  // namespace

void serve_log_follow(Sandboxes& sandboxes, const std::string& ref, const LogFollow& f, httplib::Response& res) {
  const std::string id = sandboxes.get(ref).sandbox_id();
  auto st = std::make_shared<FollowState>();
  // Subscribed before the backlog is read, so no line falls between the two; the overlap is
  // dropped below.
  st->sub = sandboxes.watchers().subscribe([id, stream = f.stream](const WatchEvent& e) {
    if (e.sandbox_id != id) return false;
    return e.kind == "phase" || (e.kind == "log" && (stream.empty() || e.stream == stream));
  });
  st->backlog = sandboxes.logs(id, f.tail, f.stream, f.since_ms);
  for (const auto& l : st->backlog) st->backlog_last_ms = std::max(st->backlog_last_ms, to_millis(l.at()));
  for (const auto& l : st->backlog)
    if (to_millis(l.at()) == st->backlog_last_ms) st->backlog_at_last.insert(message_to_json(l));
  st->ended = has_ended(sandboxes.get(id).phase());

  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("application/x-ndjson", [st, since = f.since_ms](size_t, httplib::DataSink& sink) {
    if (!st->backlog.empty()) {
      std::string out;
      for (const auto& l : st->backlog) out += message_to_json(l) + "\n";
      st->backlog.clear();
      return write(sink, out);
    }
    std::string out;
    auto deadline = Clock::now() + kPoll;
    for (auto e = st->sub->next(kPoll); e; e = st->sub->next(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::max(deadline - Clock::now(), Clock::duration::zero())))) {
      st->quiet_since = Clock::now();
      if (e->kind == "phase") {
        st->ended = st->ended || has_ended(e->phase);
        continue;
      }
      if (e->at_ms < since) continue;
      if (e->at_ms < st->backlog_last_ms || (e->at_ms == st->backlog_last_ms && st->backlog_at_last.contains(e->data)))
        continue;  // already sent with the backlog
      out += e->data + "\n";
    }
    if (!out.empty() && !write(sink, out)) return false;
    if (st->ended && Clock::now() - st->quiet_since >= kDrain) {
      sink.done();
      return true;
    }
    return sink.is_writable();
  });
}

void serve_events(Sandboxes& sandboxes, const std::optional<std::string>& sandbox_ref,
                  const std::optional<std::string>& owner, httplib::Response& res) {
  std::optional<std::string> id;
  bool gone = false;  // a deleted sandbox's stream ends at once: nothing more can happen to it
  if (sandbox_ref) {
    auto s = sandboxes.get(*sandbox_ref);
    // Another owner's sandbox is not found, as on every other route (authz.h).
    if (owner && s.owner() != *owner)
      throw Error(Code::kNotFound, "no sandbox with id or name '" + *sandbox_ref + "'", "sandbox_id");
    id = s.sandbox_id();
    gone = s.phase() == v1::DELETED;
  }
  auto slot = std::make_shared<StreamSlot>();
  auto sub = sandboxes.watchers().subscribe([id, owner](const WatchEvent& e) {
    if (e.kind != "phase" && e.kind != "denial") return false;
    if (id && e.sandbox_id != *id) return false;
    return !owner || e.owner == *owner;
  });
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // nginx and friends: pass each event at once
  auto last_write = std::make_shared<Clock::time_point>(Clock::time_point{});
  res.set_chunked_content_provider("text/event-stream", [slot, sub, id, last_write, gone](size_t, httplib::DataSink& sink) {
    if (*last_write == Clock::time_point{}) {
      // Sent at once, so the client knows it is subscribed before the first event.
      *last_write = Clock::now();
      if (!write(sink, ": watching " + (id ? "sandbox " + *id : std::string("all sandboxes")) + "\n\n")) return false;
      if (gone) sink.done();
      return true;
    }
    std::string out;
    bool deleted = false;
    auto deadline = Clock::now() + kPoll;
    for (auto e = sub->next(kPoll); e; e = sub->next(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::max(deadline - Clock::now(), Clock::duration::zero())))) {
      out += sse_frame(*e);
      deleted = deleted || (id && e->kind == "phase" && e->phase == v1::DELETED);
    }
    if (out.empty() && Clock::now() - *last_write >= kKeepAlive) out = ": keep-alive\n\n";
    if (!out.empty()) {
      if (!write(sink, out)) return false;
      *last_write = Clock::now();
    }
    if (deleted) {
      sink.done();  // nothing more can happen to it
      return true;
    }
    return sink.is_writable();
  });
}

}  // namespace bulwark::gateway
