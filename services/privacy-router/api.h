#pragma once
// The HTTP side of inference.local, as pure functions: which API a request calls, which headers
// travel on (the caller's credentials never do), the backend's credential, the `model` rewrite,
// and error bodies in the style of the API called. No sockets, no NATS.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/providers.h"

namespace bulwark::privacy_router {

using providers::ApiStyle;
using Headers = std::vector<std::pair<std::string, std::string>>;

// "openai" | "anthropic" | "" (kNone).
const char* style_name(ApiStyle s);

enum class Op { kUnknown, kChatCompletions, kCompletions, kResponses, kEmbeddings, kModels, kMessages, kCountTokens };

struct Endpoint {
  Op op = Op::kUnknown;
  // The API called; for an unknown path a guess (Anthropic for /v1/messages..., else OpenAI) so
  // that even the 404 comes in a body the caller's SDK can read.
  ApiStyle style = ApiStyle::kOpenAi;
  std::string path;   // without the query
  std::string query;  // "?..." or ""
  bool known() const { return op != Op::kUnknown; }
  bool has_body() const { return op != Op::kModels; }
};

// method and origin-form target ("/v1/chat/completions?x=1").
Endpoint classify(std::string_view method, std::string_view target);
// "POST /v1/chat/completions, ..., GET /v1/models" for the 404 message.
std::string supported_endpoints();
// A target that may go on a request line as is: starts with '/', no spaces or control characters.
bool is_safe_target(std::string_view target);

std::string lower(std::string_view s);
// Connection-level headers that never travel past one hop.
bool is_hop_by_hop(std::string_view name);
// Anything that may authenticate the caller: the known names plus any name containing "token",
// "secret", "api-key", "apikey" or "credential".
bool is_caller_credential(std::string_view name);
// A name of token characters and a value without CR, LF or NUL.
bool is_valid_header(std::string_view name, std::string_view value);
// The caller's headers minus hop-by-hop, host, content-length, accept-encoding, credentials and
// malformed ones.
Headers strip_request_headers(const Headers& in);
// Adds the backend's credential as its profile wants it (none when key is empty: a keyless
// server), and for Anthropic `anthropic-version` when the caller sent none.
void inject_credential(Headers& h, const providers::Profile& p, const std::optional<std::string>& key);
// The upstream's response headers minus hop-by-hop, content-length, transfer-encoding, set-cookie.
Headers relay_response_headers(const Headers& in);
// Case-insensitive lookup; nullptr when absent.
const std::string* find_header(const Headers& h, std::string_view name);

// An error the router answers itself: status, what to do, and the request field at fault.
struct CallError {
  int status = 500;
  std::string message;
  std::string param;  // the field at fault, e.g. "model"; "" = none
  std::string code;   // OpenAI-style machine code, e.g. "model_not_found"; "" = none
  bool overloaded = false;  // a capacity refusal (Anthropic: overloaded_error)
};

// {"error":{"message","type","code","param"}} or {"type":"error","error":{"type","message"}}.
std::string error_body(ApiStyle style, const CallError& e);

// A POST body: a JSON object with a string `model`. Throws CallError 400 (param "model").
struct Body {
  nlohmann::ordered_json json;
  std::string model;
};
Body parse_body(std::string_view body);
// The body to send: the original bytes when model stays, else the JSON with `model` replaced and
// every other field kept in its order.
std::string rewrite_model(const Body& b, std::string_view original, const std::string& backend_model);

// {"object":"list","data":[{"id","object":"model","owned_by":"bulwark"}...]}
std::string models_body(const std::vector<std::string>& ids);

}  // namespace bulwark::privacy_router
