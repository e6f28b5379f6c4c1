#pragma once
// Long-lived reads from the gateway: `bulwark sandbox logs --follow` (NDJSON of log lines) and
// `bulwark sandbox events` / `bulwark events` (Server-Sent Events of phase changes and denials).
// Paths, the SSE parser and the printed lines are pure and unit-tested; StreamClient is the HTTP
// side, reading until the gateway ends the stream or the user presses Ctrl-C.
#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/client.h"

namespace bulwark::cli {

// GET /v1/sandboxes/{ref}/logs?tail=N[&stream=S][&since=X][&follow=true]
std::string logs_path(const std::string& ref, int tail, const std::string& stream, const std::string& since, bool follow);
// GET /v1/sandboxes/{ref}/events, or /v1/events for every sandbox the token may see (ref "").
std::string events_path(const std::string& ref);

// Splits a text/event-stream into events: on_event(event name, data) per blank-line-ended block;
// comments (": ...") and unknown fields are ignored; several data: lines join with '\n'.
class SseParser {
 public:
  void feed(const char* data, size_t n, const std::function<void(const std::string&, const std::string&)>& on_event);

 private:
  void field(const std::string& line);
  std::string buf_, event_, data_;
  bool has_data_ = false;
};

// One event as a line for a person: "AT  SANDBOX  phase READY (was STARTING)" or
// "AT  SANDBOX  denial LAYER ... reason".
std::string event_text(const std::string& event, const nlohmann::json& data);

class StreamClient {
 public:
  StreamClient(const std::string& url, const std::string& token, const TlsFiles& tls = {});
  // GETs path and hands the body to on_data as it arrives, until the gateway ends it (or
  // on_data returns false). Throws CliError for no answer or a non-200 one.
  void get(const std::string& what, const std::string& path, const std::string& accept,
           const std::function<bool(const char*, size_t)>& on_data);

 private:
  std::string url_;
  httplib::Client http_;
};

}  // namespace bulwark::cli
