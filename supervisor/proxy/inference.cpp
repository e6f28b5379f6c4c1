#include "supervisor/proxy/inference.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

namespace bulwark::proxy {
namespace {

char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

bool starts_with_i(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// The tokens listed in Connection headers: hop-by-hop by declaration (RFC 9110 7.6.1).
std::vector<std::string> connection_tokens(const std::vector<HeaderField>& headers) {
  std::vector<std::string> out;
  for (const auto& f : headers) {
    if (!iequals(f.name, "connection")) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      size_t comma = std::min(v.find(','), v.size());
      std::string_view item = v.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty()) out.emplace_back(item);
      v.remove_prefix(std::min(comma + 1, v.size()));
    }
  }
  return out;
}

bool hop_by_hop(std::string_view name, const std::vector<std::string>& named) {
  static constexpr std::string_view kDrop[] = {"connection", "keep-alive", "te",             "trailer",
                                               "upgrade",    "content-length", "transfer-encoding"};
  if (std::any_of(std::begin(kDrop), std::end(kDrop), [&](std::string_view d) { return iequals(d, name); }))
    return true;
  if (starts_with_i(name, "proxy-")) return true;
  return std::any_of(named.begin(), named.end(), [&](const std::string& d) { return iequals(d, name); });
}

bool is_token_char(char ch) {
  auto c = static_cast<unsigned char>(ch);
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

// A header the handler gave that is safe to write: a token name and a value without CR, LF or
// NUL (no response splitting, whatever the privacy-router relays from a backend).
bool writable(const HeaderField& f) {
  return !f.name.empty() && std::all_of(f.name.begin(), f.name.end(), is_token_char) &&
         f.value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos;
}

}  // namespace

bool is_inference_host(std::string_view host) { return iequals(host, kInferenceHost); }

const char* status_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : "Error";
  }
}

std::string inference_error_body(std::string_view code, std::string_view message) {
  nlohmann::json j = {{"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
  // replace: a message can quote bytes from the network; the body must stay valid JSON.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string inference_error_response(int status, std::string_view code, std::string_view message, bool close) {
  std::string body = inference_error_body(code, message);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + status_reason(status) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) out += "Connection: close\r\n";
  return out + "\r\n" + body;
}

std::vector<HeaderField> inference_request_headers(const std::vector<HeaderField>& headers) {
  auto named = connection_tokens(headers);
  std::vector<HeaderField> out;
  for (const auto& f : headers)
    if (!hop_by_hop(f.name, named) && !iequals(f.name, "expect")) out.push_back(f);
  return out;
}

BodyMode inference_body_mode(std::string_view request_method, int version_minor, int status) {
  if (iequals(request_method, "HEAD") || status == 204 || status == 304 || status / 100 == 1) return BodyMode::kNone;
  return version_minor == 0 ? BodyMode::kClose : BodyMode::kChunked;
}

std::string inference_response_head(int status, const std::vector<HeaderField>& headers, BodyMode mode, bool close) {
  auto named = connection_tokens(headers);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + status_reason(status) + "\r\n";
  for (const auto& f : headers)
    if (!hop_by_hop(f.name, named) && writable(f)) out.append(f.name).append(": ").append(f.value).append("\r\n");
  if (mode == BodyMode::kChunked) out += "Transfer-Encoding: chunked\r\n";
  if (close || mode == BodyMode::kClose) out += "Connection: close\r\n";
  return out + "\r\n";
}

std::string chunk_frame(std::string_view data) {
  if (data.empty()) return {};
  char hex[24];
  auto r = std::to_chars(hex, hex + sizeof hex, data.size(), 16);
  std::string out(hex, r.ptr);
  out.reserve(out.size() + data.size() + 4);
  return out.append("\r\n").append(data).append("\r\n");
}

}  // namespace bulwark::proxy
