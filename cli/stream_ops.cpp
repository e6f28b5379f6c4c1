#include "cli/stream_ops.h"

#include <optional>

#include "cli/exec_ops.h"

namespace bulwark::cli {

using json = nlohmann::json;

std::string logs_path(const std::string& ref, int tail, const std::string& stream, const std::string& since, bool follow) {
  std::string p = "/v1/sandboxes/" + httplib::detail::encode_query_param(ref) + "/logs?tail=" + std::to_string(tail);
  if (!stream.empty()) p += "&stream=" + httplib::detail::encode_query_param(stream);
  if (!since.empty()) p += "&since=" + httplib::detail::encode_query_param(since);
  if (follow) p += "&follow=true";
  return p;
}

std::string events_path(const std::string& ref) {
  return ref.empty() ? "/v1/events" : "/v1/sandboxes/" + httplib::detail::encode_query_param(ref) + "/events";
}

void SseParser::field(const std::string& line) {
  if (line.empty() || line[0] == ':') return;
  size_t colon = line.find(':');
  std::string name = line.substr(0, colon);
  std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  if (name == "event") {
    event_ = value;
  } else if (name == "data") {
    if (has_data_) data_ += '\n';
    data_ += value;
    has_data_ = true;
  }
}

void SseParser::feed(const char* data, size_t n, const std::function<void(const std::string&, const std::string&)>& on_event) {
  buf_.append(data, n);
  size_t start = 0;
  for (size_t nl; (nl = buf_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = buf_.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) {
      field(line);
      continue;
    }
    // A blank line ends the event (one without data is dropped, as browsers do).
    if (has_data_) on_event(event_.empty() ? "message" : event_, data_);
    event_.clear();
    data_.clear();
    has_data_ = false;
  }
  buf_.erase(0, start);
}

std::string event_text(const std::string& event, const json& d) {
  std::string head = d.value("at", "") + "  " + d.value("sandbox_id", "") + "  " + event;
  if (event == "phase") {
    std::string s = head + " " + d.value("phase", "?");
    if (d.contains("previous_phase") && d["previous_phase"] != "PHASE_UNSPECIFIED")
      s += " (was " + d.value("previous_phase", "?") + ")";
    if (d.contains("exit_code")) s += " exit code " + std::to_string(d.value("exit_code", 0));
    if (!d.value("reason", "").empty()) s += ": " + d.value("reason", "");
    return s;
  }
  if (event == "denial") {
    const json dn = d.value("denial", json::object());
    return head + " " + dn.value("layer", "?") + ": " + d.value("line", "");
  }
  return head + " " + d.dump();
}

StreamClient::StreamClient(const std::string& url, const std::string& token, const TlsFiles& tls)
    : url_(url), http_(make_http_client(url, tls)) {
  if (!token.empty()) http_.set_bearer_token_auth(token.c_str());
  http_.set_tcp_nodelay(true);
  http_.set_connection_timeout(5);
  http_.set_read_timeout(24 * 3600);  // a quiet stream is not a dead one (the gateway sends keep-alives)
}

void StreamClient::get(const std::string& what, const std::string& path, const std::string& accept,
                       const std::function<bool(const char*, size_t)>& on_data) {
  int status = 0;
  std::string error_body;
  auto r = http_.Get(
      path, httplib::Headers{{"Accept", accept}},
      [&](const httplib::Response& res) {
        status = res.status;
        return true;
      },
      [&](const char* data, size_t n) {
        if (status != 200) {
          error_body.append(data, n);
          return true;
        }
        return on_data(data, n);
      });
  if (!r && status == 0) throw CliError{kUnreachable, unreachable_message(url_, r.error())};
  if (status != 200) throw http_error(what, status, error_body);
}

}  // namespace bulwark::cli
