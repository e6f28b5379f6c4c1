#pragma once
// Live streams out of the gateway: `GET /v1/events` (Server-Sent Events of phase changes and
// denials) and `GET .../logs?follow=true` (NDJSON of new log lines). Sandboxes publishes what it
// folds in (reports, log lines) to a Watchers hub; each open stream holds a Subscription with a
// bounded queue, so a slow client never holds up the bus. No socket here: the HTTP side only
// drains a Subscription.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::gateway {

struct WatchEvent {
  std::string kind;        // "phase" | "denial" | "log"
  std::string sandbox_id;
  std::string owner;       // the sandbox's owner (token_id), for per-owner streams
  std::string stream;      // kind "log": the LogLine's stream (stdout, denial...)
  int64_t at_ms = 0;
  std::string data;        // one line of JSON: the SSE data (phase, denial) or the LogLine (log)
  v1::SandboxPhase phase = v1::PHASE_UNSPECIFIED;  // kind "phase": the new phase
};

// Events: a phase change and a denial (a log line of stream "denial") as their SSE data objects,
// each carrying sandbox_id and at (RFC 3339). Pure.
WatchEvent phase_event(const v1::Sandbox& after, v1::SandboxPhase before);
WatchEvent log_event(const v1::LogLine& line, const std::string& owner);  // kind "log"
std::optional<WatchEvent> denial_event(const v1::LogLine& line, const std::string& owner);  // stream "denial" only
// "event: phase\ndata: {...}\n\n"
std::string sse_frame(const WatchEvent& e);

// Phases after which a sandbox writes no more logs (a follow ends after draining).
bool has_ended(v1::SandboxPhase p);

// `since` as the logs route takes it: an RFC 3339 time (2026-11-30T03:00:00Z) or a duration back
// from now_ms (90s, 5m, 1h30m, 2d, 250ms). Returns milliseconds since the epoch; Error
// invalid_argument naming field `since` otherwise.
int64_t parse_since(const std::string& text, int64_t now_ms);

class Watchers {
 public:
  using Filter = std::function<bool(const WatchEvent&)>;

  class Subscription {
   public:
    // The next event, waiting up to `wait`; nullopt when none came.
    std::optional<WatchEvent> next(std::chrono::milliseconds wait);
    // Events lost because the queue was full (the oldest go first).
    uint64_t dropped() const;

   private:
    friend class Watchers;
    Subscription(Filter f, size_t max_queue) : filter_(std::move(f)), max_queue_(max_queue) {}
    void offer(const WatchEvent& e);
    Filter filter_;
    size_t max_queue_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<WatchEvent> queue_;
    uint64_t dropped_ = 0;
  };

  // The stream ends when the caller drops the pointer (the hub holds it weakly).
  std::shared_ptr<Subscription> subscribe(Filter f, size_t max_queue = 4096);
  void publish(const WatchEvent& e);
  size_t subscribers();  // live ones (for tests: a closed stream leaves none behind)

 private:
  std::mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subs_;
};

}  // namespace bulwark::gateway
