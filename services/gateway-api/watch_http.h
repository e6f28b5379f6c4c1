#pragma once
// The HTTP side of the live streams (watch.h): each drains one Subscription into a chunked
// response on the request's own httplib thread, which returns as soon as the client has gone
// (a write fails or the socket is no longer alive), the stream ends, or the server stops.
#include <optional>
#include <string>

#include <httplib.h>

#include "services/gateway-api/sandboxes.h"

namespace bulwark::gateway {

// The HTTP server's threads (httplib's default is 8): live streams hold one each while open.
inline constexpr int kHttpThreads = 64;
// Live streams open at once, at most: the rest of the threads stay for ordinary requests.
inline constexpr int kMaxStreams = 48;

struct LogFollow {
  size_t tail = 1000;
  std::string stream;  // "" = all
  int64_t since_ms = 0;
};

// GET /v1/sandboxes/{id}/logs?follow=true: NDJSON, one LogLine per line: the backlog (tail, since),
// then new lines until the sandbox has ended (EXITED, STOPPED, FAILED, deleted) and its last
// lines have arrived. Throws Error (404...) before anything is sent.
void serve_log_follow(Sandboxes& sandboxes, const std::string& ref, const LogFollow& f, httplib::Response& res);

// GET /v1/events and /v1/sandboxes/{id}/events: Server-Sent Events `phase` and `denial`.
// sandbox_id: only that sandbox's (the stream then ends once it is deleted, at once when it already
// was); owner: only the
// sandboxes of that token (a ci caller's own). Throws Error before anything is sent.
void serve_events(Sandboxes& sandboxes, const std::optional<std::string>& sandbox_ref,
                  const std::optional<std::string>& owner, httplib::Response& res);

}  // namespace bulwark::gateway
