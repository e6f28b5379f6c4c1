#include "services/privacy-router/api.h"

#include <algorithm>
#include <array>

namespace bulwark::privacy_router {
namespace {

struct Known {
  const char* method;
  const char* path;
  Op op;
  ApiStyle style;
};
constexpr std::array<Known, 7> kKnown = {{
    {"POST", "/v1/chat/completions", Op::kChatCompletions, ApiStyle::kOpenAi},
    {"POST", "/v1/completions", Op::kCompletions, ApiStyle::kOpenAi},
    {"POST", "/v1/responses", Op::kResponses, ApiStyle::kOpenAi},
    {"POST", "/v1/embeddings", Op::kEmbeddings, ApiStyle::kOpenAi},
    {"POST", "/v1/messages", Op::kMessages, ApiStyle::kAnthropic},
    {"POST", "/v1/messages/count_tokens", Op::kCountTokens, ApiStyle::kAnthropic},
    {"GET", "/v1/models", Op::kModels, ApiStyle::kOpenAi},
}};

// Never throws on invalid UTF-8 (an upstream's error text may carry any bytes): replaces it.
std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

}  // namespace

const char* style_name(ApiStyle s) {
  switch (s) {
    case ApiStyle::kOpenAi: return "openai";
    case ApiStyle::kAnthropic: return "anthropic";
    case ApiStyle::kNone: break;
  }
  return "";
}

Endpoint classify(std::string_view method, std::string_view target) {
  Endpoint e;
  size_t q = target.find('?');
  e.path = std::string(target.substr(0, q));
  e.query = q == std::string_view::npos ? "" : std::string(target.substr(q));
  // A trailing slash is the same resource to every SDK we know of.
  std::string path = e.path.size() > 1 && e.path.back() == '/' ? e.path.substr(0, e.path.size() - 1) : e.path;
  if (path.rfind("/v1/messages", 0) == 0) e.style = ApiStyle::kAnthropic;
  for (const auto& k : kKnown) {
    if (path == k.path && method == k.method) {
      e.op = k.op;
      e.style = k.style;
      e.path = path;
    }
  }
  return e;
}

std::string supported_endpoints() {
  std::string out;
  for (const auto& k : kKnown) out += (out.empty() ? "" : ", ") + std::string(k.method) + " " + k.path;
  return out;
}

bool is_safe_target(std::string_view target) {
  if (target.empty() || target.front() != '/') return false;
  return std::none_of(target.begin(), target.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_hop_by_hop(std::string_view name) {
  const std::string n = lower(name);
  return n == "connection" || n == "keep-alive" || n.rfind("proxy-", 0) == 0 || n == "te" || n == "trailer" ||
         n == "transfer-encoding" || n == "upgrade";
}

bool is_caller_credential(std::string_view name) {
  static const std::array<std::string_view, 9> kExact = {
      "authorization", "x-api-key",      "api-key",         "cookie",           "x-goog-api-key",
      "openai-organization", "openai-project", "anthropic-api-key", "proxy-authorization"};
  const std::string n = lower(name);
  if (std::find(kExact.begin(), kExact.end(), n) != kExact.end()) return true;
  return contains(n, "token") || contains(n, "secret") || contains(n, "api-key") || contains(n, "apikey") ||
         contains(n, "credential");
}

bool is_valid_header(std::string_view name, std::string_view value) {
  // RFC 9110 token characters for the name; no CR, LF or NUL in the value (they would end the
  // header line on the upstream request: header injection).
  static constexpr std::string_view kTokenExtra = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          kTokenExtra.find(c) != std::string_view::npos))
      return false;
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

Headers strip_request_headers(const Headers& in) {
  Headers out;
  for (const auto& [name, value] : in) {
    const std::string n = lower(name);
    if (!is_valid_header(name, value) || is_hop_by_hop(n) || is_caller_credential(n) || n == "host" || n == "content-length" ||
        n == "accept-encoding")
      continue;
    out.emplace_back(name, value);
  }
  return out;
}

const std::string* find_header(const Headers& h, std::string_view name) {
  const std::string n = lower(name);
  for (const auto& [k, v] : h)
    if (lower(k) == n) return &v;
  return nullptr;
}

void inject_credential(Headers& h, const providers::Profile& p, const std::optional<std::string>& key) {
  if (key && !key->empty() && !p.auth_header.empty())
    h.emplace_back(p.auth_header, p.bearer ? "Bearer " + *key : *key);
  if (p.api == ApiStyle::kAnthropic && !find_header(h, "anthropic-version"))
    h.emplace_back("anthropic-version", "2023-06-01");
}

Headers relay_response_headers(const Headers& in) {
  Headers out;
  for (const auto& [name, value] : in) {
    const std::string n = lower(name);
    if (is_hop_by_hop(n) || n == "content-length" || n == "set-cookie") continue;
    out.emplace_back(name, value);
  }
  return out;
}

std::string error_body(ApiStyle style, const CallError& e) {
  const int s = e.status;
  if (style == ApiStyle::kAnthropic) {
    // https://docs.anthropic.com/en/api/errors
    std::string type = s == 400 || s == 405 || s == 422 ? "invalid_request_error"
                       : s == 401                       ? "authentication_error"
                       : s == 403                       ? "permission_error"
                       : s == 404                       ? "not_found_error"
                       : s == 413                       ? "request_too_large"
                       : s == 429                       ? "rate_limit_error"
                       : s == 504                       ? "timeout_error"
                       : e.overloaded                   ? "overloaded_error"
                                                        : "api_error";
    nlohmann::ordered_json j = {{"type", "error"}, {"error", {{"type", type}, {"message", e.message}}}};
    return dump(j);
  }
  std::string type = s == 401 ? "authentication_error"
                     : s == 403 ? "permission_error"
                     : s == 429 ? "rate_limit_error"
                     : s < 500  ? "invalid_request_error"
                                : "api_error";
  nlohmann::ordered_json err = {{"message", e.message}, {"type", type}};
  err["code"] = e.code.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.code);
  err["param"] = e.param.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.param);
  return dump(nlohmann::ordered_json{{"error", err}});
}

Body parse_body(std::string_view body) {
  Body b;
  try {
    b.json = nlohmann::ordered_json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    throw CallError{400, std::string("the request body is not valid JSON: ") + e.what(), "", "invalid_json"};
  }
  if (!b.json.is_object())
    throw CallError{400, "the request body must be a JSON object with a string \"model\"", "model"};
  auto it = b.json.find("model");
  if (it == b.json.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
    throw CallError{400, "the request body needs a string \"model\" naming the model to call", "model"};
  b.model = it->get<std::string>();
  return b;
}

std::string rewrite_model(const Body& b, std::string_view original, const std::string& backend_model) {
  if (backend_model.empty() || backend_model == b.model) return std::string(original);
  nlohmann::ordered_json j = b.json;
  j["model"] = backend_model;  // ordered_json keeps the key where it was
  return dump(j);
}

std::string models_body(const std::vector<std::string>& ids) {
  nlohmann::ordered_json data = nlohmann::ordered_json::array();
  for (const auto& id : ids) data.push_back({{"id", id}, {"object", "model"}, {"owned_by", "bulwark"}});
  return dump(nlohmann::ordered_json{{"object", "list"}, {"data", data}});
}

}  // namespace bulwark::privacy_router
